"""Requests for one problem that arrive together go out as one request with a list of prompts
(vLLM and SGLang), each caller getting its own choices, with the usage the server reported."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from providers.openai_compat import OpenAIProvider
from providers.openai_compat.batching import BatchMember, PromptBatcher
from providers.openai_compat.retry import RetryPolicy
from rebase_agent import (
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    RebaseConfig,
    RebaseSearch,
    StepCompletion,
    StepRequest,
)
from rebase_agent.testing import FunctionScorer
from tests.providers.openai_compat.fake_server import FakeApp, Fault, Flavor, Sample, serve

pytestmark = pytest.mark.anyio


def echo_tag(prompt: str, i: int) -> Sample:
    """A step that names the last word of its prompt (the caller's tag) and its choice."""
    return Sample(f"after {prompt.split()[-1]} choice {i}.")


def request(tag: str, n: int = 1, **fields: object) -> StepRequest:
    return StepRequest(problem="p", steps=(f"Step 1: {tag}\n\n",), n=n, **fields)  # type: ignore[arg-type]


async def generate_all(
    provider: OpenAIProvider, requests: list[StepRequest]
) -> list[list[StepCompletion] | BaseException]:
    """Each request's completions (or its error), all sent in the same turn of the loop."""
    got: list[list[StepCompletion] | BaseException] = [[] for _ in requests]

    async def one(i: int) -> None:
        try:
            got[i] = await provider.generate(requests[i])
        except ProviderError as exc:
            got[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(len(requests)):
            tg.start_soon(one, i)
    return got


async def test_requests_that_arrive_together_go_as_one_list_each_caller_gets_its_own() -> None:
    app = FakeApp(Flavor(server="vllm"))
    app.script = echo_tag
    sizes = [1, 2, 3, 1, 2]
    async with serve(app) as url, OpenAIProvider("m", url, server="vllm") as provider:
        assert provider.batching
        got = await generate_all(provider, [request(f"t{k}", n) for k, n in enumerate(sizes)])
        assert provider.batches_sent == 1
    (seen,) = app.paths("/v1/completions")
    assert seen.body["prompt"] == [
        f"p\n\nStep 1: t{k}\n\n" for k, n in enumerate(sizes) for _ in range(n)
    ]
    assert "n" not in seen.body and "seed" not in seen.body
    for k, (n, completions) in enumerate(zip(sizes, got, strict=True)):
        assert isinstance(completions, list)
        # its own prompt's choices, distinct samples as n would give
        assert [c.text for c in completions] == [f"after t{k} choice {i}.\n\n" for i in range(n)]
    every = [c for completions in got if isinstance(completions, list) for c in completions]
    assert sum(c.completion_tokens for c in every) == app.usage_sent["completion_tokens"]
    assert sum(c.prompt_tokens for c in every) == app.usage_sent["prompt_tokens"]
    assert all(c.completion_tokens > 0 and c.prompt_tokens > 0 for c in every)


async def test_the_reported_prompt_tokens_are_split_by_prompt_length() -> None:
    app = FakeApp(Flavor(server="vllm"))
    long_step = " ".join(["word"] * 40)
    async with serve(app) as url, OpenAIProvider("m", url, server="vllm") as provider:
        short, long = await generate_all(provider, [request("t0"), request(long_step)])
    assert isinstance(short, list) and isinstance(long, list)
    assert long[0].prompt_tokens > 5 * short[0].prompt_tokens
    assert short[0].prompt_tokens + long[0].prompt_tokens == app.usage_sent["prompt_tokens"]


async def test_seeded_requests_other_problems_and_other_limits_are_not_batched_together() -> None:
    app = FakeApp(Flavor(server="vllm"))
    async with serve(app) as url, OpenAIProvider("m", url, server="vllm") as provider:
        await generate_all(provider, [request(f"s{k}", 2, seed=k) for k in range(3)])
        assert len(app.paths("/v1/completions")) == 3  # one seed would serve every prompt
        assert [r.body["seed"] for r in app.requests] == [0, 1, 2]
        app.requests.clear()
        others = [
            StepRequest(problem="p", n=2),
            StepRequest(problem="q", n=2),
            StepRequest(problem="p", n=2, max_tokens=17),
            StepRequest(problem="p", n=2, temperature=0.5),
        ]
        await generate_all(provider, others)
        assert len(app.paths("/v1/completions")) == 4
        assert provider.batches_sent == 0


async def test_batching_is_off_where_the_server_is_not_known_to_take_a_list() -> None:
    app = FakeApp(Flavor(server="llama_server"))
    async with serve(app) as url:
        for server in ("generic", "llama_server", "openai"):
            async with OpenAIProvider("m", url, server=server) as provider:  # type: ignore[arg-type]
                assert not provider.batching
        async with OpenAIProvider("m", url, server="vllm", batch_prompts=False) as provider:
            assert not provider.batching
            app.requests.clear()
            await generate_all(provider, [request(f"t{k}") for k in range(3)])
            assert len(app.paths("/v1/completions")) == 3
        async with OpenAIProvider("m", url, server="generic", batch_prompts=True) as provider:
            assert provider.batching  # the user says this server takes a list
        async with OpenAIProvider("m", url, server="sglang", mode="chat_prefill") as provider:
            assert not provider.batching  # a chat request has no list of prompts


def test_batch_prompts_needs_a_raw_prompt_mode() -> None:
    with pytest.raises(ValueError, match=r"batch_prompts=True needs mode='completions'.*chat"):
        OpenAIProvider("m", "http://127.0.0.1:9/v1", mode="chat_prefill", batch_prompts=True)


async def test_a_prompt_the_server_refuses_fails_alone_with_its_own_error() -> None:
    app = FakeApp(Flavor(server="vllm", max_prompt_words=20))
    app.script = echo_tag
    long_step = " ".join(["word"] * 30)
    requests = [request("t0"), request(long_step), request("t2", 2)]
    async with serve(app) as url, OpenAIProvider("m", url, server="vllm") as provider:
        got = await generate_all(provider, requests)
    assert isinstance(got[1], ProviderHTTPError) and got[1].status_code == 400
    assert "maximum context length is 20 tokens" in str(got[1])
    assert [c.text for c in got[0]] == ["after t0 choice 0.\n\n"]  # type: ignore[union-attr]
    assert [c.text for c in got[2]] == [  # type: ignore[union-attr]
        "after t2 choice 0.\n\n",
        "after t2 choice 1.\n\n",
    ]
    sent = [r.body["prompt"] for r in app.paths("/v1/completions")]
    assert len(sent) == 4 and isinstance(sent[0], list) and len(sent[0]) == 4  # then one each
    assert all(isinstance(p, str) for p in sent[1:])


async def test_a_timeout_of_the_batch_is_every_members_own_error() -> None:
    app = FakeApp(Flavor(server="vllm"))
    app.fail_next(Fault(status=200, delay_s=2.0))
    once = RetryPolicy(max_attempts=1)
    async with (
        serve(app) as url,
        OpenAIProvider("m", url, server="vllm", timeout_s=0.2, retry=once) as provider,
    ):
        got = await generate_all(provider, [request(f"t{k}") for k in range(3)])
    assert all(isinstance(e, ProviderTimeout) for e in got)
    assert len({id(e) for e in got}) == 3  # each raises its own copy
    assert len(app.paths("/v1/completions")) == 1


async def test_when_the_sender_is_cancelled_the_others_still_get_their_choices() -> None:
    app = FakeApp(Flavor(server="vllm", latency_s=0.3))
    app.script = echo_tag
    got: dict[str, list[StepCompletion]] = {}
    async with serve(app) as url, OpenAIProvider("m", url, server="vllm") as provider:

        async def sender() -> None:  # the first to arrive: it sends the batch
            with anyio.move_on_after(0.1):
                got["t0"] = await provider.generate(request("t0"))

        async def other(tag: str) -> None:
            got[tag] = await provider.generate(request(tag))

        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            tg.start_soon(other, "t1")
            tg.start_soon(other, "t2")
    assert sorted(got) == ["t1", "t2"]
    assert [c.text for c in got["t1"]] == ["after t1 choice 0.\n\n"]
    sent = [r.body["prompt"] for r in app.paths("/v1/completions")]
    assert len(sent) == 2 and len(sent[0]) == 3 and len(sent[1]) == 2  # again, without it


async def test_a_cancelled_member_leaves_and_the_rest_are_answered() -> None:
    app = FakeApp(Flavor(server="vllm", latency_s=0.3))
    app.script = echo_tag
    got: dict[str, list[StepCompletion]] = {}
    async with serve(app) as url, OpenAIProvider("m", url, server="vllm") as provider:

        async def member(tag: str, patience_s: float) -> None:
            with anyio.move_on_after(patience_s):
                got[tag] = await provider.generate(request(tag))

        async with anyio.create_task_group() as tg:
            tg.start_soon(member, "t0", 5.0)
            tg.start_soon(member, "t1", 0.1)  # gives up while the batch is out
            tg.start_soon(member, "t2", 5.0)
    assert sorted(got) == ["t0", "t2"]
    assert len(app.paths("/v1/completions")) == 1


async def test_a_search_sends_one_request_a_depth_and_counts_what_the_server_served() -> None:
    app = FakeApp(Flavor(server="vllm"))
    app.script = lambda prompt, i: (
        Sample(f"The answer is {i % 3}.", "eos")
        if prompt.count("Step") >= 3
        else Sample(f"Step {prompt.count('Step') + 1}: try {i}.")
    )
    config = RebaseConfig(budget=16, max_depth=5)
    async with serve(app) as url, OpenAIProvider("m", url, server="vllm") as provider:
        scorer = FunctionScorer(lambda r: [[0.5] * len(steps) for steps in r.solutions])
        result = await RebaseSearch(provider, scorer, config).solve("p")
    depths = max(node.depth for node in result.nodes)
    assert result.usage.provider_requests > depths  # several nodes a depth...
    assert len(app.paths("/v1/completions")) == depths  # ...one request each depth
    assert result.usage.completion_tokens == app.usage_sent["completion_tokens"]
    assert result.usage.prompt_tokens == app.usage_sent["prompt_tokens"]
    assert len(result.candidates) == 16


async def test_a_batch_carries_at_most_max_prompts_and_the_rest_start_another() -> None:
    sent: list[list[str]] = []

    async def send_batch(members: Sequence[BatchMember]) -> list[list[StepCompletion]]:
        sent.append([m.prompt for m in members for _ in range(m.request.n)])
        step = "step"
        return [[StepCompletion(text=m.prompt, finish_reason=step)] * m.request.n for m in members]

    async def send_one(request: StepRequest, prompt: str) -> list[StepCompletion]:
        sent.append([prompt] * request.n)
        return [StepCompletion(text=prompt, finish_reason="step")] * request.n

    batcher = PromptBatcher(send_batch, send_one, max_prompts=4)
    got: dict[str, list[StepCompletion]] = {}

    async def one(tag: str, n: int) -> None:
        got[tag] = await batcher.generate(StepRequest(problem="p", n=n), tag)

    async with anyio.create_task_group() as tg:
        for k, n in enumerate([2, 2, 2, 2, 5, 1]):
            tg.start_soon(one, f"t{k}", n)
    expected = [["t0", "t0", "t1", "t1"], ["t2", "t2", "t3", "t3"], ["t4"] * 5, ["t5"]]
    assert sorted(sent) == expected  # t4 alone: more than max_prompts by itself
    assert {tag: [c.text for c in cs] for tag, cs in got.items()} == {
        f"t{k}": [f"t{k}"] * n for k, n in enumerate([2, 2, 2, 2, 5, 1])
    }
    assert batcher.batches_sent == 2
    with pytest.raises(ValueError, match="max_prompts must be >= 1, got 0"):
        PromptBatcher(send_batch, send_one, max_prompts=0)
