from __future__ import annotations

from functools import partial

import anyio
import pytest

from rebase_agent.concurrency import holding, raising_first_error, run_all

pytestmark = pytest.mark.anyio


async def test_the_first_error_of_a_task_group_is_raised_itself_with_its_cause() -> None:
    async def fails() -> None:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise ValueError("bad") from exc

    with pytest.raises(ValueError, match="bad") as info:
        with raising_first_error():
            async with anyio.create_task_group() as tg:
                tg.start_soon(fails)
                tg.start_soon(anyio.sleep_forever)  # cancelled by the failure
    assert isinstance(info.value.__cause__, KeyError)


async def test_nested_groups_give_their_first_leaf() -> None:
    group = ExceptionGroup("outer", [ExceptionGroup("inner", [OSError("leaf")]), KeyError()])
    with pytest.raises(OSError, match="leaf"), raising_first_error():
        raise group


def test_other_errors_pass_through_unchanged() -> None:
    error = RuntimeError("plain")
    with pytest.raises(RuntimeError) as info, raising_first_error():
        raise error
    assert info.value is error


async def test_holding_takes_a_free_token_without_yielding_and_releases_it() -> None:
    limiter = anyio.CapacityLimiter(2)
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)  # runs at the next checkpoint
        async with holding(limiter):
            assert limiter.borrowed_tokens == 1
            assert ran == []  # no checkpoint on the way in
        assert ran == [] and limiter.borrowed_tokens == 0
        async with limiter:  # anyio's own acquire yields even with tokens free
            assert ran == ["other"]
    with pytest.raises(KeyError):
        async with holding(limiter):
            raise KeyError
    assert limiter.borrowed_tokens == 0


async def test_holding_waits_its_turn_when_tokens_are_taken() -> None:
    limiter = anyio.CapacityLimiter(1)
    order: list[str] = []

    async def take(name: str) -> None:
        async with holding(limiter):
            order.append(name)
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        async with holding(limiter):
            tg.start_soon(take, "first waiter")
            await anyio.wait_all_tasks_blocked()
            assert limiter.statistics().tasks_waiting == 1
            limiter.total_tokens = 2  # a free token, but a task queued before: it is first
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(take, "second")
            await anyio.wait_all_tasks_blocked()
    assert order == ["first waiter", "second"]
    assert limiter.borrowed_tokens == 0


async def test_holding_cancelled_while_waiting_takes_no_token() -> None:
    limiter = anyio.CapacityLimiter(1)
    release = anyio.Event()

    async def holder() -> None:
        async with holding(limiter):
            await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        with anyio.move_on_after(0.01) as scope:
            async with holding(limiter):
                pytest.fail("entered without a token")
        assert scope.cancelled_caught
        assert limiter.borrowed_tokens == 1 and limiter.statistics().tasks_waiting == 0
        release.set()
    assert limiter.borrowed_tokens == 0


# -- run_all: the expander's task group -----------------------------------------------------------

BACKENDS = [pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")]


def _run(backend: str, main: object) -> None:
    if backend == "trio":
        pytest.importorskip("trio")
    anyio.run(main, backend=backend)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_all_runs_every_call_at_once(backend: str) -> None:
    async def main() -> None:
        started: list[int] = []
        everyone_in = anyio.Event()

        async def call(i: int) -> None:
            started.append(i)
            if len(started) == 5:
                everyone_in.set()
            with anyio.fail_after(5):
                await everyone_in.wait()  # only returns once all five run at once

        await run_all([partial(call, i) for i in range(5)])
        assert sorted(started) == [0, 1, 2, 3, 4]

    _run(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_all_the_first_error_cancels_the_others(backend: str) -> None:
    async def main() -> None:
        cancelled: list[bool] = []

        async def fails() -> None:
            await anyio.sleep(0.01)
            raise ValueError("bad")

        async def waits() -> None:
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                cancelled.append(True)
                raise

        with pytest.raises(ValueError, match="bad"), raising_first_error():
            await run_all([waits, fails, waits])
        assert cancelled == [True, True]

    _run(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_all_cancelled_from_outside_cancels_and_waits_for_every_call(backend: str) -> None:
    async def main() -> None:
        cleaned: list[int] = []
        limiter = anyio.CapacityLimiter(2)

        async def call(i: int) -> None:
            try:
                async with holding(limiter):  # anyio's primitives work inside the tasks
                    await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(0.01)  # a shielded clean-up finishes before run_all ends
                cleaned.append(i)

        with anyio.move_on_after(0.1) as scope:
            await run_all([partial(call, i) for i in range(4)])
        assert scope.cancelled_caught
        assert sorted(cleaned) == [0, 1, 2, 3]
        assert limiter.borrowed_tokens == 0

    _run(backend, main)
