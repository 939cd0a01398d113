"""Retries, deadlines and error messages of the OpenAI-compatible providers, on localhost."""

from __future__ import annotations

import logging
import re
import time
import traceback
from typing import Any

import anyio
import pytest

from providers.openai_compat import (
    EndpointConnectionError,
    JudgeScorer,
    OpenAIProvider,
    QwenPRMScorer,
    RetryPolicy,
)
from rebase_agent import (
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    ScoreRequest,
    ScoringError,
    StepRequest,
)
from tests.providers.openai_compat.fake_server import FakeApp, Fault, Flavor, serve

pytestmark = pytest.mark.anyio

KEY = "sk-proj-SECRET0123456789abcdef"
FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05, jitter_s=0.0)


def provider(url: str | list[str], **kwargs: Any) -> OpenAIProvider:
    kwargs.setdefault("retry", FAST)
    return OpenAIProvider("policy-model", url, api_key=KEY, **kwargs)


async def test_429_honours_retry_after_then_succeeds() -> None:
    app = FakeApp()
    app.fail_next(Fault(429, headers={"retry-after": "0.3"}))
    async with serve(app) as url, provider(url) as p:
        start = time.monotonic()
        got = await p.generate(StepRequest(problem="p"))
        elapsed = time.monotonic() - start
    assert len(got) == 1 and len(app.requests) == 2
    assert elapsed >= 0.3  # waited as told, not the 0.01 s backoff


async def test_retry_after_ms_is_honoured_and_retry_after_capped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    app = FakeApp()
    app.fail_next(
        Fault(429, headers={"retry-after-ms": "50"}), Fault(503, headers={"retry-after": "999"})
    )
    policy = FAST.model_copy(update={"max_retry_after_s": 0.1})
    async with serve(app) as url, provider(url, retry=policy) as p:
        start = time.monotonic()
        await p.generate(StepRequest(problem="p"))
        elapsed = time.monotonic() - start
    assert len(app.requests) == 3
    waits = re.findall(r"retrying in ([0-9.]+)s", caplog.text)
    assert waits == ["0.05", "0.10"]  # the server's 50 ms, then 999 s capped at 0.1 s
    assert elapsed >= 0.15  # and both were slept


async def test_500_then_success_counts_usage_once() -> None:
    app = FakeApp()
    app.fail_next(Fault(500), Fault(502))
    async with serve(app) as url, provider(url) as p:
        got = await p.generate(StepRequest(problem="a b c"))
    assert len(app.requests) == 3
    assert got[0].prompt_tokens == 3  # only the successful answer's usage


async def test_gives_up_after_max_attempts_naming_endpoint_and_model() -> None:
    app = FakeApp()
    app.fail_next(*[Fault(503)] * 10)
    async with serve(app) as url, provider(url) as p:
        with pytest.raises(ProviderHTTPError) as info:
            await p.generate(StepRequest(problem="p"))
    assert len(app.requests) == FAST.max_attempts
    assert info.value.status_code == 503 and info.value.retryable
    assert f"{url}/completions" in str(info.value) and "policy-model" in str(info.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_are_not_retried(status: int) -> None:
    app = FakeApp()
    app.fail_next(Fault(status, body={"error": {"message": "nope"}}))
    async with serve(app) as url, provider(url) as p:
        with pytest.raises(ProviderHTTPError) as info:
            await p.generate(StepRequest(problem="p"))
    assert len(app.requests) == 1
    assert info.value.status_code == status and not info.value.retryable
    assert "nope" in str(info.value)


async def test_api_key_never_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = FakeApp()
    echo = {"error": {"message": f"Incorrect API key provided: {KEY}", "code": "invalid_api_key"}}
    partial = {"error": {"message": f"Key ...{KEY[-10:]} is rate limited"}}
    app.fail_next(Fault(429, body=partial), Fault(401, body=echo))
    async with serve(app) as url, provider(url) as p:
        with pytest.raises(ProviderHTTPError) as info:
            await p.generate(StepRequest(problem="p"))
    assert app.requests[0].headers["authorization"] == f"Bearer {KEY}"  # it was sent...
    texts = [str(info.value), repr(info.value), caplog.text]
    texts += [str(info.value.__cause__), str(info.value.__context__)]
    texts.append("".join(traceback.format_exception(info.value)))
    for text in texts:  # ...but never shown
        assert KEY not in text and KEY[-8:] not in text
    assert "Incorrect API key provided: ***" in str(info.value)
    assert "retrying" in caplog.text


async def test_timeouts_are_retried_then_raise_provider_timeout() -> None:
    app = FakeApp(Flavor(latency_s=10))
    policy = FAST.model_copy(update={"max_attempts": 2})
    async with serve(app) as url, provider(url, retry=policy, timeout_s=0.2) as p:
        # Were the 0.2 s timeout not enforced, both 10 s answers would arrive and nothing raise.
        with pytest.raises(ProviderTimeout, match="timed out"):
            await p.generate(StepRequest(problem="p"))
        with anyio.fail_after(3):
            await app.wait_hangups(2)
    assert len(app.requests) == 2 and app.completed == []


async def test_connection_refused_is_retried_then_raised() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nothing listens there now
    async with provider(f"http://127.0.0.1:{port}/v1") as p:
        with pytest.raises(EndpointConnectionError, match="connection failed") as info:
            await p.generate(StepRequest(problem="p"))
    assert isinstance(info.value, ProviderError) and KEY not in str(info.value)


async def test_a_retry_goes_to_another_replica() -> None:
    bad, good = FakeApp(), FakeApp()
    bad.fail_next(Fault(503))
    async with (
        serve(bad) as url_a,
        serve(good) as url_b,
        provider([url_a, url_b], routing="least_loaded") as p,
    ):
        got = await p.generate(StepRequest(problem="p"))
    assert len(got) == 1 and len(bad.requests) == 1 and len(good.requests) == 1


async def test_a_retry_leaves_the_problems_replica_then_comes_back() -> None:
    apps = [FakeApp(), FakeApp()]
    for app in apps:
        app.fail_next(Fault(503))
    async with serve(apps[0]) as url_a, serve(apps[1]) as url_b, provider([url_a, url_b]) as p:
        got = await p.generate(StepRequest(problem="p"))
        home = 0 if apps[0].completed else 1
        assert len(await p.generate(StepRequest(problem="p"))) == 1
    # home fails, the other fails, home answers; then the problem stays on its replica
    assert len(got) == 1
    assert [len(apps[home].requests), len(apps[1 - home].requests)] == [3, 1]


async def test_fan_out_failure_raises_the_error_not_a_group() -> None:
    app = FakeApp(Flavor(latency_s=0.05))
    async with serve(app) as url, provider(url, supports_n=False) as p:
        await p.generate(StepRequest(problem="warm up"))
        app.fail_next(Fault(200), Fault(401, body={"error": {"message": "revoked"}}))
        with pytest.raises(ProviderHTTPError, match="revoked"):
            await p.generate(StepRequest(problem="p", n=3))


async def test_scorer_errors_are_scoring_errors_without_the_key() -> None:
    app = FakeApp()
    app.fail_next(Fault(401, body={"error": {"message": f"bad key {KEY}"}}))
    async with serve(app) as url, QwenPRMScorer("prm", url, api_key=KEY, retry=FAST) as scorer:
        with pytest.raises(ScoringError) as info:
            await scorer.score(ScoreRequest(problem="p", solutions=(("a",),)))
    assert "/pooling" in str(info.value) and "'prm'" in str(info.value)
    assert KEY not in str(info.value)


async def test_judge_retries_429() -> None:
    app = FakeApp()
    app.fail_next(Fault(429, headers={"retry-after": "0"}))
    async with serve(app) as url, JudgeScorer("judge", url, retry=FAST) as scorer:
        scores = await scorer.score(ScoreRequest(problem="p", solutions=(("a",),)))
    assert len(app.requests) == 2 and scores == [[pytest.approx(0.6 / 0.9)]]


async def test_a_dead_replica_is_skipped_while_another_is_up() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    dead = f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}/v1"
    await listener.aclose()
    app = FakeApp()
    async with serve(app) as url, provider([dead, url], routing="least_loaded") as p:
        for _ in range(6):
            assert len(await p.generate(StepRequest(problem="p"))) == 1
        dead_endpoint, live_endpoint = p.endpoints.endpoints
    assert dead_endpoint.requests == 1 and live_endpoint.requests == 6
