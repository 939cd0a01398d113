"""A server's decoding slots: taken several at a time, first come first served, shared by every
pool of the process, and on a fake llama-server never exceeded by the choices in flight."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from providers.openai_compat import JudgeScorer, OpenAIProvider
from providers.openai_compat.slots import ServerSlots, forget, register, slots_of
from rebase_agent import ScoreRequest, StepRequest
from tests.providers.openai_compat.fake_server import FakeApp, Flavor, serve

pytestmark = pytest.mark.anyio


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Root URLs a test registers; forgotten after it."""
    roots: list[str] = []
    yield roots
    for root in roots:
        forget(root)


async def test_slots_go_in_arrival_order_and_a_large_request_is_not_passed_over() -> None:
    slots = ServerSlots(4)
    order: list[str] = []
    await slots.acquire(3)  # one slot left

    async def take(name: str, count: int) -> None:
        async with slots.holding(count):
            order.append(name)
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, "big", 4)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(take, "small", 1)  # one slot is free, but "big" came first
        await anyio.wait_all_tasks_blocked()
        assert order == [] and slots.waiting == 2 and slots.free == 1
        slots.release(3)
    assert order == ["big", "small"]
    assert slots.free == 4 and slots.waiting == 0


async def test_a_cancelled_waiter_leaves_the_queue_and_lets_the_next_one_in() -> None:
    slots = ServerSlots(2)
    await slots.acquire(1)
    got: list[int] = []

    async def take(count: int) -> None:
        await slots.acquire(count)
        got.append(count)

    async with anyio.create_task_group() as tg:
        waiter = anyio.CancelScope()

        async def big_waiter() -> None:
            with waiter:
                await take(2)  # only one slot is free

        tg.start_soon(big_waiter)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(take, 1)  # fits, but queued behind the request for 2
        await anyio.wait_all_tasks_blocked()
        assert got == [] and slots.waiting == 2
        waiter.cancel()  # the request for 2 gives up: the one for 1 goes in
    assert got == [1] and slots.free == 0 and slots.waiting == 0


async def test_no_slot_is_lost_when_a_grant_and_a_cancellation_meet() -> None:
    slots = ServerSlots(2)
    await slots.acquire(2)
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def waiter() -> None:
            with scope:
                async with slots.holding(2):
                    await anyio.sleep_forever()

        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        slots.release(2)  # granted to the waiter...
        scope.cancel()  # ...which is cancelled before it runs again
    assert slots.free == 2 and slots.waiting == 0


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="total must be >= 1, got 0"):
        ServerSlots(0)
    slots = ServerSlots(2)
    with pytest.raises(ValueError, match=r"count must be in 1..2, got 3"):
        anyio.run(slots.acquire, 3)


async def test_choices_in_flight_stay_within_a_llama_servers_slots(
    registered: list[str],
) -> None:
    # The fake llama-server says it has 4 slots (/props total_slots). Six searches' worth of
    # requests for 3 choices each at once: at most 4 choices in flight, so at most one request.
    app = FakeApp(Flavor(server="llama_server", latency_s=0.05))
    async with serve(app) as url:
        registered.append(url.removesuffix("/v1"))
        async with OpenAIProvider("m", url, probe=True) as provider:
            await provider.prepare()
            assert provider.report is not None and provider.report.slots == 4
            app.max_in_flight = 0
            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(provider.generate, StepRequest(problem=f"p{i}", n=3))
                for i in range(6):
                    tg.start_soon(provider.generate, StepRequest(problem=f"q{i}", n=1))
            slots = slots_of(url.removesuffix("/v1"))
            assert slots is not None and slots.total == 4 and slots.free == 4
    assert app.max_in_flight_choices <= 4
    assert app.max_in_flight_choices >= 3  # and the slots were used, not left idle


async def test_the_judge_shares_the_servers_slots_with_the_policy(
    registered: list[str],
) -> None:
    app = FakeApp(Flavor(server="llama_server", latency_s=0.05))
    async with serve(app) as url:
        registered.append(url.removesuffix("/v1"))
        async with (
            OpenAIProvider("m", url, probe=True) as provider,
            JudgeScorer("m", url) as judge,
        ):
            await provider.prepare()
            await judge.prepare()
            app.max_in_flight_choices = 0
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(provider.generate, StepRequest(problem=f"p{i}", n=2))
                    request = ScoreRequest(problem=f"p{i}", solutions=[("Step 1: 1 + 1 = 2.",)])
                    tg.start_soon(judge.score, request)
    assert app.max_in_flight_choices <= 4


async def test_a_server_without_a_slot_count_is_not_limited_by_one(
    registered: list[str],
) -> None:
    app = FakeApp(Flavor(server="vllm", latency_s=0.05))
    async with serve(app) as url:
        root = url.removesuffix("/v1")
        registered.append(root)
        register(root, 2)  # as if an earlier server on this port had said 2
        async with OpenAIProvider("m", url, probe=True) as provider:
            await provider.prepare()
            assert provider.report is not None and provider.report.slots is None
            assert slots_of(root) is None  # the probe found none: forgotten
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(provider.generate, StepRequest(problem=f"p{i}", n=2))
    assert app.max_in_flight_choices > 2


@pytest.mark.parametrize("slots", ["taken first", "forgotten"])
async def test_requests_wait_for_slots_here_not_past_their_deadline_in_the_server(
    registered: list[str], slots: str
) -> None:
    # A server with 4 slots (it says so in /props) and 0.2 s per request: 8 requests for 2
    # choices each at once take 4 turns there, 0.8 s, past a 0.5 s deadline for the last ones
    # when they queue in the server; waiting for slots here, each deadline starts when it is sent.
    from providers.openai_compat import RetryPolicy

    app = FakeApp(Flavor(server="llama_server", latency_s=0.2, decoding_slots=4))
    once = RetryPolicy(max_attempts=1)
    async with serve(app) as url:
        root = url.removesuffix("/v1")
        registered.append(root)
        async with OpenAIProvider("m", url, probe=True, timeout_s=0.5, retry=once) as provider:
            await provider.prepare()
            if slots == "forgotten":
                forget(root)
            failures: list[BaseException] = []

            async def one(i: int) -> None:
                try:
                    await provider.generate(StepRequest(problem=f"p{i}", n=2))
                except Exception as exc:
                    failures.append(exc)

            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(one, i)
    if slots == "taken first":
        assert failures == []
        assert app.max_in_flight_choices <= 4
    else:
        assert failures and all("timed out" in str(f) for f in failures)
