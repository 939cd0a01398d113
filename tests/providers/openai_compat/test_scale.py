"""Scale-out behaviour of the OpenAI-compatible provider, on localhost fake servers: the
adaptive per-endpoint limit, cache-aware routing over replicas, and the JSON hot path."""

from __future__ import annotations

import time

import anyio
import pytest

from providers.openai_compat import OpenAIProvider, RetryPolicy
from providers.openai_compat.adaptive import AdaptiveLimit
from providers.openai_compat.endpoints import DEFAULT_CONCURRENCY, EndpointPool
from rebase_agent import ProviderHTTPError, StepRequest
from tests.providers.openai_compat.fake_server import FakeApp, Fault, Flavor, serve

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.0, max_backoff_s=0.0, jitter_s=0.0)


async def burst(provider: OpenAIProvider, count: int, problem: str = "p") -> None:
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(provider.generate, StepRequest(problem=problem))


async def test_the_default_limit_does_not_hold_back_a_default_search() -> None:
    app = FakeApp(Flavor(latency_s=0.2))
    async with serve(app) as url, OpenAIProvider("m", url) as provider:
        await burst(provider, DEFAULT_CONCURRENCY)
        assert provider.endpoints.endpoints[0].limit.limit >= DEFAULT_CONCURRENCY
    # A default search keeps up to 64 requests in flight; the old per-endpoint default was 16.
    # (Not all 256 need overlap: on a loaded machine the first ones may finish before the last
    # are sent.)
    assert app.max_in_flight > 64


async def test_the_limit_grows_while_latency_holds() -> None:
    app = FakeApp(Flavor(latency_s=0.05))
    pool_args = {"max_limit": 1000}
    async with serve(app) as url:
        pool = EndpointPool(url, **pool_args)  # type: ignore[arg-type]
        pool.endpoints[0].limit = AdaptiveLimit(4, latency_tolerance=20.0)
        pool.endpoints[0].limiter = pool.endpoints[0].limit.limiter
        async with OpenAIProvider("m", url, endpoints=pool) as provider:
            await burst(provider, 200)
        limit = pool.endpoints[0].limit.limit
    assert limit > 4 and app.max_in_flight > 4
    assert pool.endpoints[0].limit.cuts == 0


async def test_a_fixed_limit_stays_fixed() -> None:
    app = FakeApp(Flavor(latency_s=0.05))
    async with serve(app) as url, OpenAIProvider("m", url, max_concurrency=3) as provider:
        await burst(provider, 30)
        assert provider.endpoints.endpoints[0].limit.limit == 3
    assert app.max_in_flight == 3


async def test_429_halves_the_limit_once_per_burst() -> None:
    app = FakeApp(Flavor(latency_s=0.05))
    # Answered late, so all five are sent before the first 429 comes back (a retry sent after
    # the cut, overtaking a request still connecting, would rightly cut again).
    app.fail_next(*[Fault(429, headers={"retry-after": "0"}, delay_s=0.3) for _ in range(5)])
    async with serve(app) as url, OpenAIProvider("m", url, retry=FAST) as provider:
        await burst(provider, 5)  # five requests sent together, five 429s: one cut
        limit = provider.endpoints.endpoints[0].limit
        assert limit.limit == DEFAULT_CONCURRENCY // 2 and limit.cuts == 1
        app.fail_next(Fault(503))
        await provider.generate(StepRequest(problem="p"))  # sent after the cut: cuts again
        assert limit.limit == DEFAULT_CONCURRENCY // 4 and limit.cuts == 2


async def test_a_400_does_not_touch_the_limit() -> None:
    app = FakeApp()
    app.fail_next(Fault(400, body={"error": {"message": "bad prompt"}}))
    async with serve(app) as url, OpenAIProvider("m", url, retry=FAST) as provider:
        with pytest.raises(ProviderHTTPError, match="bad prompt"):
            await provider.generate(StepRequest(problem="p"))
        assert provider.endpoints.endpoints[0].limit.cuts == 0


async def test_rising_latency_cuts_the_limit() -> None:
    app = FakeApp(Flavor(latency_s=0.01))
    async with serve(app) as url, OpenAIProvider("m", url) as provider:
        for _ in range(20):
            await provider.generate(StepRequest(problem="p"))
        limit = provider.endpoints.endpoints[0].limit
        assert limit.cuts == 0 and limit.limit == DEFAULT_CONCURRENCY
        app.flavor.latency_s = 0.25  # the server slows down for good
        for _ in range(10):
            await provider.generate(StepRequest(problem="p"))
        assert limit.cuts >= 1 and limit.limit < DEFAULT_CONCURRENCY


async def test_a_flat_latency_lets_the_waiting_requests_in_and_a_queueing_one_does_not() -> None:
    flat, queueing = AdaptiveLimit(4), AdaptiveLimit(4)
    for i in range(30):
        flat.on_success(time.monotonic() - 0.1, saturated=True, waiting=1000)
        # answers 5% slower each: they queue behind the server's slots
        queueing.on_success(time.monotonic() - 0.1 * (1 + i / 20), saturated=True, waiting=1000)
    assert flat.limit == flat.maximum  # the jump: up to what waits, capped
    assert queueing.limit == 4 + 30 and queueing.cuts == 0  # slow start: one per answer
    unsaturated = AdaptiveLimit(4)
    for _ in range(30):
        unsaturated.on_success(time.monotonic() - 0.1, saturated=False)
    assert unsaturated.limit == 4


def test_adaptive_limit_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="minimum <= initial"):
        AdaptiveLimit(0)
    with pytest.raises(ValueError, match="latency_tolerance"):
        AdaptiveLimit(8, latency_tolerance=1.0)
    with pytest.raises(ValueError, match="flat_tolerance"):
        AdaptiveLimit(8, flat_tolerance=2.0)


async def test_a_problem_stays_on_one_replica() -> None:
    apps = [FakeApp(), FakeApp()]
    async with serve(apps[0]) as a, serve(apps[1]) as b, OpenAIProvider("m", [a, b]) as p:
        for _ in range(10):
            await p.generate(StepRequest(problem="the same problem", steps=("Step 1.\n\n",)))
        assert sorted(len(app.requests) for app in apps) == [0, 10]
        for i in range(40):
            await p.generate(StepRequest(problem=f"problem {i}"))
    assert all(len(app.requests) > 0 for app in apps)  # 40 problems: not all on one (2^-39)


async def test_a_replica_that_runs_ahead_sheds_load() -> None:
    apps = [FakeApp(Flavor(latency_s=0.2)), FakeApp(Flavor(latency_s=0.2))]
    async with serve(apps[0]) as a, serve(apps[1]) as b:
        pool = EndpointPool([a, b], balance_abs_threshold=2, balance_rel_threshold=1.5)
        async with OpenAIProvider("m", [a, b], endpoints=pool) as provider:
            await burst(provider, 20)
    counts = sorted(len(app.requests) for app in apps)
    assert counts[0] > 0 and counts[1] >= counts[0] and pool.escapes == counts[0]


async def test_least_loaded_routing_ignores_the_problem() -> None:
    apps = [FakeApp(), FakeApp()]
    async with (
        serve(apps[0]) as a,
        serve(apps[1]) as b,
        OpenAIProvider("m", [a, b], routing="least_loaded") as provider,
    ):
        for _ in range(10):
            await provider.generate(StepRequest(problem="p"))
    assert [len(app.requests) for app in apps] == [5, 5]


def test_routing_is_checked() -> None:
    with pytest.raises(ValueError, match="routing"):
        EndpointPool("http://127.0.0.1:1/v1", routing="random")  # type: ignore[arg-type]


async def test_the_hot_path_sends_what_the_openai_client_sent() -> None:
    app = FakeApp()
    key = "sk-test-0123456789abcdefXYZ"
    async with (
        serve(app) as url,
        OpenAIProvider("m", url, server="vllm", api_key=key, extra_body={"top_k": 20}) as p,
    ):
        await p.generate(StepRequest(problem="p", n=2, seed=7, max_tokens=9))
    seen = app.requests[0]
    assert seen.path == "/v1/completions"
    assert seen.headers["authorization"] == f"Bearer {key}"
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == {
        "model": "m",
        "prompt": "p\n\n",
        "max_tokens": 9,
        "n": 2,
        "temperature": 1.0,
        "top_p": 1.0,
        "stop": ["\n\n"],
        "seed": 7,
        "include_stop_str_in_output": True,
        "top_k": 20,
    }


async def test_off_the_direct_path_requests_go_through_the_openai_client() -> None:
    app = FakeApp(Flavor(supports_n=False, n_error=True))
    async with serve(app) as url, OpenAIProvider("m", url, retry=FAST) as provider:
        provider.endpoints.endpoints[0].transport.direct = False  # as off asyncio, or proxied
        got = await provider.generate(StepRequest(problem="p", n=2))
        app.fail_next(Fault(429, headers={"retry-after": "0"}))
        await provider.generate(StepRequest(problem="p"))
    # the 400 naming n was read from the openai client's error as from the hot path's
    assert len(got) == 2 and [r.body.get("n") for r in app.requests] == [2, None, None, None, None]
