"""A whole REBASE solve through the OpenAI-compatible provider and scorer, on localhost."""

from __future__ import annotations

import importlib
import itertools

import pytest

from providers.openai_compat import OpenAIProvider, QwenPRMScorer, RetryPolicy
from rebase_agent import RebaseConfig, solve
from tests.providers.openai_compat.fake_server import FakeApp, Fault, Flavor, Sample, serve

pytestmark = pytest.mark.anyio
FAST = RetryPolicy(max_attempts=5, initial_backoff_s=0.01, max_backoff_s=0.02, jitter_s=0.0)


def math_steps(prompt: str, i: int) -> Sample:
    """Two steps, then an answer; every fourth sample is a bad step."""
    depth = prompt.count("Step ")
    if depth >= 2:
        return Sample("The answer is \\boxed{4}.", "eos")
    return Sample(f"Step {depth + 1}: {'bad' if i % 4 == 3 else 'good'} move.")


@pytest.mark.parametrize(
    ("flavor", "faults"),
    [
        (Flavor(stop_style="vllm"), []),
        (Flavor(stop_style="none", supports_n=False, n_error=True), [Fault(500), Fault(429)]),
    ],
    ids=["vllm", "no-n-with-faults"],
)
async def test_rebase_solve_counts_every_token_once(flavor: Flavor, faults: list[Fault]) -> None:
    policy, prm = FakeApp(flavor), FakeApp()
    policy.script = math_steps
    policy.fail_next(*faults)
    prm.fail_next(*[Fault(503, path="/pooling")][: len(faults)])
    async with (
        serve(policy) as policy_url,
        serve(prm) as prm_url,
        OpenAIProvider("policy", policy_url, server="vllm", retry=FAST) as provider,
        QwenPRMScorer("prm", prm_url, retry=FAST) as scorer,
    ):
        result = await solve(
            "What is 2+2?",
            provider=provider,
            scorer=scorer,
            config=RebaseConfig(budget=8, max_depth=6, seed=3),
        )
    assert result.answer == "4"
    assert len(result.candidates) == 8
    assert result.usage.prompt_tokens == policy.usage_sent["prompt_tokens"]
    assert result.usage.completion_tokens == policy.usage_sent["completion_tokens"]
    assert result.usage.scorer_prompt_tokens == prm.usage_sent["prompt_tokens"]
    texts = [n.step for n in result.nodes if n.depth == 1]
    assert all(t.endswith("\n\n") for t in texts)
    unused = list(itertools.chain(policy.faults, prm.faults))
    assert unused == []


async def test_the_example_runs_against_vllm_like_servers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = importlib.import_module("examples.vllm")
    policy, prm = FakeApp(Flavor(stop_style="vllm")), FakeApp()
    policy.script = math_steps
    async with serve(policy) as policy_url, serve(prm) as prm_url:
        monkeypatch.setattr(example, "POLICY_URL", policy_url)
        monkeypatch.setattr(example, "PRM_URL", prm_url)
        await example.main()
    out = capsys.readouterr().out
    assert "answer: 4" in out
    assert policy.requests[0].body["prompt"].startswith("<|im_start|>system\nPlease reason")
    assert policy.requests[0].body["include_stop_str_in_output"] is True


async def test_the_llama_server_example_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = importlib.import_module("examples.llama_server")
    policy, judge = FakeApp(Flavor(stop_style="llama_server")), FakeApp()
    policy.script = math_steps
    async with serve(policy) as policy_url, serve(judge) as judge_url:
        monkeypatch.setattr(example, "POLICY_URL", policy_url)
        monkeypatch.setattr(example, "JUDGE_URL", judge_url)
        await example.main()
    assert "answer: 4" in capsys.readouterr().out
    assert len(policy.paths("/apply-template")) == 1


async def test_the_openai_api_example_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = importlib.import_module("examples.openai_api")
    app = FakeApp(Flavor(stop_style="none"))
    app.script = lambda prompt, i: (
        Sample("The answer is \\boxed{24}.", "eos")
        if prompt.count("Step") >= 2
        else Sample(f"Step {prompt.count('Step') + 1}: think.")
    )
    async with serve(app) as url:
        monkeypatch.setattr(example, "BASE_URL", url)
        await example.main()
    assert "answer: 24" in capsys.readouterr().out
    chat = [r.body for r in app.paths("/v1/chat/completions") if "max_completion_tokens" in r.body]
    assert chat and all(b["messages"][-1]["role"] == "user" for b in chat)
