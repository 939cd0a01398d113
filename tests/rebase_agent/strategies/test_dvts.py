from __future__ import annotations

import pytest
from pydantic import ValidationError

from rebase_agent import RebaseConfig, StepRequest, solve
from rebase_agent.testing import FunctionProvider, ScriptedProvider, ScriptedScorer

pytestmark = pytest.mark.anyio


async def test_dvts_keeps_budget_over_beam_width_subtrees() -> None:
    provider = ScriptedProvider(depth=4)
    config = RebaseConfig(budget=12, beam_width=3, seed=5)
    result = await solve(
        "p", provider=provider, scorer=ScriptedScorer(), config=config, strategy="dvts"
    )
    assert [r.n for r in provider.requests] == [12] + [3] * 4 * 3
    for depth in (1, 2, 3):
        layer = [n for n in result.nodes if n.depth == depth]
        expanded = [n for n in layer if n.width > 0]
        assert len(expanded) == 4  # one per subtree
        # ... and it is the best of its subtree's three new children.
        for node in expanded:
            if depth == 1:  # the root's 12 children: subtree k holds ids 3k+1 .. 3k+3
                siblings = [n for n in layer if (n.id - 1) // 3 == (node.id - 1) // 3]
            else:
                siblings = [n for n in layer if n.parent == node.parent]
            assert len(siblings) == 3
            assert node.reward == max(s.reward for s in siblings)
            assert all(s.status == "pruned" for s in siblings if s is not node)
    assert len(result.candidates) == 4 * 3  # the last depth's children all finish
    assert result.unfinished == 0


async def test_a_subtree_stops_when_its_best_child_finished() -> None:
    def steps(request: StepRequest) -> list[str]:
        if request.depth == 0:  # subtree 0's best child answers at once; subtree 1 goes on
            return ["The answer is 1.", "a\n\n", "b\n\n", "c\n\n"]
        return ["The answer is 2."] * request.n

    scorer = ScriptedScorer(rules={"answer is 1": 0.99})
    config = RebaseConfig(budget=4, beam_width=2)
    result = await solve(
        "p", provider=FunctionProvider(steps), scorer=scorer, config=config, strategy="dvts"
    )
    assert result.tree_shape() == [1, 4, 2]
    assert sorted(c.answer for c in result.candidates) == ["1", "2", "2"]


async def test_open_subtrees_at_the_depth_cap_are_unfinished_and_never_vote() -> None:
    config = RebaseConfig(budget=4, beam_width=2, max_depth=2)
    result = await solve(
        "p",
        provider=ScriptedProvider(depth=9),
        scorer=ScriptedScorer(),
        config=config,
        strategy="dvts",
    )
    assert result.stopped == "max_depth" and result.candidates == [] and result.unfinished == 2


async def test_bad_beam_width_fails_before_any_request() -> None:
    provider = ScriptedProvider()
    with pytest.raises(
        ValidationError, match=r"budget \(10\) must be a multiple of beam_width \(4\)"
    ):
        await solve(
            "p",
            provider=provider,
            scorer=ScriptedScorer(),
            config=RebaseConfig(budget=10, beam_width=4),
            strategy="dvts",
        )
    assert provider.requests == []


async def test_a_failed_subtree_ends_and_the_others_go_on() -> None:
    from rebase_agent import ProviderError

    def steps(request: StepRequest) -> list[str]:
        if request.depth == 0:
            return [f"s{i}\n\n" for i in range(request.n)]
        if request.steps[0] in {"s0\n\n", "s1\n\n"}:
            raise ProviderError("down")
        return ["The answer is 3."] * request.n

    scorer = ScriptedScorer(rules={"s0": 0.9, "s2": 0.9})
    config = RebaseConfig(budget=4, beam_width=2)
    result = await solve(
        "p", provider=FunctionProvider(steps), scorer=scorer, config=config, strategy="dvts"
    )
    assert result.usage.failed_expansions == 1
    assert [c.answer for c in result.candidates] == ["3", "3"]
