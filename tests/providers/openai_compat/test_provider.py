"""OpenAIProvider against the fake OpenAI-compatible server on localhost."""

from __future__ import annotations

import itertools

import anyio
import pytest

from providers.openai_compat import (
    FormatTemplate,
    JinjaChatTemplate,
    OpenAIProvider,
    ServerChatTemplate,
)
from providers.openai_compat.requests import mentions_n
from rebase_agent import Provider, ProviderError, StepRequest
from tests.loops import ASYNCIO_LOOPS
from tests.providers.openai_compat.fake_server import FakeApp, Fault, Flavor, Sample, serve

pytestmark = pytest.mark.anyio


@pytest.fixture(params=ASYNCIO_LOOPS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """Every test on asyncio's loop and on uvloop's (the commands' loop where installed)."""
    return request.param


def three_kinds(prompt: str, i: int) -> Sample:
    """Choice 0 stops at a delimiter, choice 1 ends the solution, choice 2 hits the limit."""
    return [Sample("Step one."), Sample("The answer is 4.", "eos"), Sample("Long", "length")][i % 3]


async def test_completions_with_n_on_vllm_keeps_delimiter_and_maps_finish() -> None:
    app = FakeApp(Flavor(stop_style="vllm"))
    app.script = three_kinds
    async with serve(app) as url, OpenAIProvider("m", url, server="vllm") as provider:
        assert isinstance(provider, Provider)
        got = await provider.generate(StepRequest(problem="1+3?", steps=("A\n\n",), n=3))
    assert [(c.text, c.finish_reason) for c in got] == [
        ("Step one.\n\n", "step"),
        ("The answer is 4.", "eos"),
        ("Long", "length"),
    ]
    (seen,) = app.requests
    assert seen.path == "/v1/completions"
    assert seen.body["n"] == 3 and seen.body["include_stop_str_in_output"] is True
    assert seen.body["prompt"] == "1+3?\n\nA\n\n"
    assert seen.body["stop"] == ["\n\n"]
    assert provider.endpoints.endpoints[0].supports_n is True


@pytest.mark.parametrize("style", ["vllm", "sglang", "llama_server"])
async def test_stop_fields_tell_delimiter_from_eos_when_server_trims(style: str) -> None:
    app = FakeApp(Flavor(stop_style=style))  # type: ignore[arg-type]
    app.script = lambda prompt, i: [Sample("no marker"), Sample("no marker", "eos")][i]
    async with serve(app) as url, OpenAIProvider("m", url) as provider:
        got = await provider.generate(StepRequest(problem="p", n=2))
    assert [(c.text, c.finish_reason) for c in got] == [
        ("no marker\n\n", "step"),  # trimmed by the server, re-appended
        ("no marker", "eos"),
    ]


async def test_silent_server_falls_back_to_the_text() -> None:
    app = FakeApp(Flavor(stop_style="none"))
    app.script = lambda prompt, i: [
        Sample("Step 2: x = 3."),
        Sample("So the answer is \\boxed{3}.", "eos"),
        Sample("A\n\nB", "eos"),  # ran past the delimiter (stop ignored)
    ][i]
    async with serve(app) as url, OpenAIProvider("m", url) as provider:
        got = await provider.generate(StepRequest(problem="p", n=3))
    assert [(c.text, c.finish_reason) for c in got] == [
        ("Step 2: x = 3.\n\n", "step"),
        ("So the answer is \\boxed{3}.", "eos"),
        ("A\n\n", "step"),
    ]


async def test_steps_join_back_with_several_delimiters() -> None:
    app = FakeApp(Flavor(stop_style="vllm"))
    async with serve(app) as url, OpenAIProvider("m", url) as provider:
        got = await provider.generate(StepRequest(problem="p", stop=("\nStep", "\n\n")))
    assert got[0].text == "Step 0.\nStep"  # the delimiter the server named, not the first


@pytest.mark.parametrize("n_error", [True, False], ids=["400-naming-n", "fewer-choices"])
async def test_n_unsupported_is_detected_once_and_remembered(n_error: bool) -> None:
    app = FakeApp(Flavor(supports_n=False, n_error=n_error, stop_style="none"))
    counter = itertools.count()
    app.script = lambda prompt, i: Sample(f"s{next(counter)}")
    async with serve(app) as url, OpenAIProvider("m", url) as provider:
        first = await provider.generate(StepRequest(problem="p", n=4, seed=10))
        assert provider.endpoints.endpoints[0].supports_n is False
        before = len(app.requests)
        second = await provider.generate(StepRequest(problem="p", n=4, seed=20))
    assert len(first) == len(second) == 4
    assert before == (5 if n_error else 4)  # the 400 costs one extra request, once
    later = app.requests[before:]
    assert len(later) == 4 and all("n" not in r.body for r in later)
    assert sorted(r.body["seed"] for r in later) == [20, 21, 22, 23]  # distinct samples
    assert len({c.text for c in first}) == 4


async def test_a_cap_on_n_splits_requests_instead_of_dropping_n() -> None:
    # llama-server allows n up to its slots and answers a 400 naming the cap beyond it.
    app = FakeApp(Flavor(max_n=4))
    async with serve(app) as url, OpenAIProvider("m", url) as provider:
        first = await provider.generate(StepRequest(problem="p", n=10, seed=5))
        endpoint = provider.endpoints.endpoints[0]
        assert (endpoint.max_n, endpoint.supports_n) == (4, True)
        before = len(app.requests)
        second = await provider.generate(StepRequest(problem="p", n=6, seed=20))
    assert len(first) == 10 and len(second) == 6
    sent = [(r.body.get("n"), r.body["seed"]) for r in app.requests]
    assert sent[:2] == [(10, 5), (4, 5)]  # the 400 costs one extra request, once
    assert sorted(sent[2:before]) == [(2, 13), (4, 9)]  # the rest, seeds by first choice
    assert sorted(sent[before:]) == [(2, 24), (4, 20)]


async def test_supports_n_false_is_never_probed() -> None:
    app = FakeApp()
    async with serve(app) as url, OpenAIProvider("m", url, supports_n=False) as provider:
        got = await provider.generate(StepRequest(problem="p", n=3))
    assert len(got) == 3 and len(app.requests) == 3
    assert all("n" not in r.body for r in app.requests)


async def test_usage_is_split_without_loss_or_double_count() -> None:
    app = FakeApp(Flavor(stop_style="vllm"))
    app.script = lambda prompt, i: Sample("word " * (i + 1))
    async with serve(app) as url, OpenAIProvider("m", url, server="vllm") as provider:
        got = await provider.generate(StepRequest(problem="a b c d e f g", n=3))
    assert sum(c.prompt_tokens for c in got) == 7
    assert sum(c.completion_tokens for c in got) == 1 + 2 + 3
    assert [c.completion_tokens for c in got] == sorted(c.completion_tokens for c in got)


async def test_replicas_share_the_load_least_loaded_first() -> None:
    apps = [FakeApp(Flavor(latency_s=0.05)), FakeApp(Flavor(latency_s=0.05))]
    async with (
        serve(apps[0]) as url_a,
        serve(apps[1]) as url_b,
        OpenAIProvider("m", [url_a, url_b], max_concurrency=2, routing="least_loaded") as provider,
        anyio.create_task_group() as tg,
    ):
        for _ in range(8):
            tg.start_soon(provider.generate, StepRequest(problem="p"))
    assert [len(a.requests) for a in apps] == [4, 4]
    assert all(a.max_in_flight <= 2 for a in apps)


async def test_slow_replica_gets_fewer_requests() -> None:
    slow, fast = FakeApp(Flavor(latency_s=0.3)), FakeApp(Flavor(latency_s=0.01))
    async with (
        serve(slow) as url_a,
        serve(fast) as url_b,
        OpenAIProvider("m", [url_a, url_b], routing="least_loaded") as provider,
        anyio.create_task_group() as tg,
    ):
        for _ in range(20):
            tg.start_soon(provider.generate, StepRequest(problem="p"))
            await anyio.sleep(0.02)
    assert len(slow.requests) <= 4 and len(fast.requests) >= 16


async def test_cancellation_cancels_the_request_in_flight() -> None:
    app = FakeApp(Flavor(latency_s=30))
    async with serve(app) as url, OpenAIProvider("m", url) as provider:
        with anyio.move_on_after(0.3):
            await provider.generate(StepRequest(problem="p", n=2))
        with anyio.fail_after(5):  # the answer takes 30 s: only a cancelled request hangs up
            await app.wait_hangups(1)
    assert app.disconnected == ["/v1/completions"] and app.completed == []


async def test_cancellation_cancels_every_fanned_out_request() -> None:
    app = FakeApp(Flavor(supports_n=False))  # one choice back, at once
    async with serve(app) as url, OpenAIProvider("m", url) as provider:
        app.fail_next(Fault(200), Fault(200, delay_s=30), Fault(200, delay_s=30))
        async with anyio.create_task_group() as tg:
            tg.start_soon(provider.generate, StepRequest(problem="p", n=3))
            # Cancel once all three are at the server (not after a fixed time: on a loaded
            # machine the last one may not have been sent yet, and then it cannot hang up).
            with anyio.fail_after(10):
                while len(app.requests) < 3:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        with anyio.fail_after(10):
            await app.wait_hangups(2)
    assert len(app.requests) == 3 and app.completed == ["/v1/completions"]


async def test_chat_prefill_on_vllm_continues_the_assistant_message() -> None:
    app = FakeApp(Flavor(stop_style="vllm"))
    async with (
        serve(app) as url,
        OpenAIProvider(
            "m", url, mode="chat_prefill", server="vllm", system_prompt="sys"
        ) as provider,
    ):
        await provider.generate(StepRequest(problem="p"))
        got = await provider.generate(StepRequest(problem="p", steps=("a\n\n", "b\n\n")))
    first, second = (r.body for r in app.requests)
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert "continue_final_message" not in first
    assert second["messages"][-1] == {"role": "assistant", "content": "a\n\nb\n\n"}
    assert second["continue_final_message"] is True
    assert second["add_generation_prompt"] is False
    assert app.requests[0].path == "/v1/chat/completions"
    assert got[0].text == "Step 0.\n\n" and got[0].finish_reason == "step"


async def test_chat_next_step_asks_for_one_more_step_on_openai() -> None:
    app = FakeApp(Flavor(stop_style="none"))
    async with (
        serve(app) as url,
        OpenAIProvider("m", url, mode="chat_next_step", server="openai") as provider,
    ):
        got = await provider.generate(StepRequest(problem="p", steps=("a\n\n",), n=2))
    (body,) = (r.body for r in app.requests)
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["max_completion_tokens"] == 256 and "max_tokens" not in body
    assert "include_stop_str_in_output" not in body and body["n"] == 2
    assert [c.text for c in got] == ["Step 0.\n\n", "Step 1.\n\n"]


async def test_sglang_backend_asks_to_keep_the_stop_string() -> None:
    app = FakeApp(Flavor(stop_style="sglang"))
    app.script = lambda prompt, i: Sample("x", "eos")
    async with serve(app) as url, OpenAIProvider("m", url, server="sglang") as provider:
        got = await provider.generate(StepRequest(problem="p"))
    assert app.requests[0].body["no_stop_trim"] is True
    assert got[0].finish_reason == "eos"


async def test_ollama_raw_generate_sends_n_raw_requests() -> None:
    app = FakeApp()
    async with (
        serve(app) as url,
        OpenAIProvider(
            "llama3", url, mode="ollama_raw", template=FormatTemplate("Q: {problem}\nA: ")
        ) as provider,
    ):
        got = await provider.generate(StepRequest(problem="p", steps=("x\n\n",), n=3, seed=1))
    assert len(got) == 3 and all(c.finish_reason == "step" for c in got)
    assert all(c.text.endswith("\n\n") for c in got)
    bodies = [r.body for r in app.paths("/api/generate")]
    assert len(bodies) == 3
    assert all(b["raw"] is True and b["stream"] is False for b in bodies)
    assert bodies[0]["prompt"] == "Q: p\nA: x\n\n"
    assert sorted(b["options"]["seed"] for b in bodies) == [1, 2, 3]
    assert sum(c.completion_tokens for c in got) == 6


async def test_jinja_chat_template_renders_the_prefix() -> None:
    template = JinjaChatTemplate(
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}",
        system_prompt="Be brief.",
    )
    app = FakeApp()
    async with serve(app) as url, OpenAIProvider("m", url, template=template) as provider:
        await provider.generate(StepRequest(problem="2+2?", steps=("a\n\n",)))
    assert app.requests[0].body["prompt"] == (
        "<|system|>Be brief.<|end|><|user|>2+2?<|end|><|assistant|>a\n\n"
    )


async def test_server_chat_template_is_fetched_once_per_problem() -> None:
    app = FakeApp()
    async with (
        serve(app) as url,
        OpenAIProvider("m", url, template=ServerChatTemplate()) as provider,
    ):
        await provider.generate(StepRequest(problem="p"))
        await provider.generate(StepRequest(problem="p", steps=("a\n\n",)))
    assert len(app.paths("/apply-template")) == 1
    prompts = [r.body["prompt"] for r in app.paths("/v1/completions")]
    assert prompts == ["<user>p</user><assistant>", "<user>p</user><assistant>a\n\n"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("Only one completion choice is allowed", True),
        ("'n' must be 1 when using greedy sampling", True),
        ("n > 1 is not supported", True),
        ("Unrecognized request argument supplied: n", True),
        (
            "This model's maximum context length is 2048 tokens. However, you requested 2100 "
            "tokens (100 in the messages, 2000 in the completion).",
            False,
        ),
        ("stop must be a list of at most 4 strings\\n", False),
        ("invalid token in prompt", False),
    ],
)
def test_a_400_naming_n_is_recognised(text: str, named: bool) -> None:
    assert mentions_n(text) is named


async def test_garbled_json_is_a_provider_error() -> None:
    app = FakeApp()
    app.fail_next(Fault(200, body="{not json", raw=True))
    async with serve(app) as url, OpenAIProvider("m", url) as provider:
        with pytest.raises(ProviderError, match="JSONDecodeError"):
            await provider.generate(StepRequest(problem="p"))


def test_every_public_name_is_exported() -> None:
    import providers.openai_compat as package

    assert sorted(package.__all__) == list(package.__all__)
    for name in package.__all__:
        assert getattr(package, name) is not None
