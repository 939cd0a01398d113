"""The level-search machinery that REBASE, sampling, beam search and DVTS share."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from rebase_agent import RebaseConfig, StepRequest, StrategyName, solve
from rebase_agent.strategies import STRATEGIES
from rebase_agent.strategies.level import LevelSearch, open_children, spent_samples
from rebase_agent.strategies.rebase import Rebase
from rebase_agent.testing import FunctionProvider, ScriptedProvider, ScriptedScorer
from rebase_agent.tree import Node, SearchTree

pytestmark = pytest.mark.anyio


class RebaseOnTheSharedLoop(LevelSearch):
    """REBASE's allocation on :class:`LevelSearch`'s loop."""

    def allocate(self, frontier: Sequence[Node], budget: int, config: RebaseConfig) -> list[int]:
        return Rebase().allocate(frontier, budget, config)


@pytest.mark.parametrize(
    "config",
    [
        RebaseConfig(budget=16, seed=3, max_depth=6),
        RebaseConfig(budget=12, seed=4, max_depth=2, balance_temperature=0.5),
        RebaseConfig(budget=9, seed=5, max_solution_tokens=12),
    ],
)
async def test_the_rebase_loop_is_the_level_search_loop(
    config: RebaseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def steps(request: StepRequest) -> list[str]:
        out = []
        for i in range(request.n):
            value = ((request.seed or 0) * 31 + i) % 97
            done = request.depth >= 2 and value % 4 == 0
            out.append(f"The answer is {value % 3}." if done else f"step {value} more\n\n")
        return out

    async def run() -> list[tuple[int, int | None, str, str, int]]:
        result = await solve(
            "p", provider=FunctionProvider(steps), scorer=ScriptedScorer(), config=config
        )
        return [(n.id, n.parent, n.step, n.status, n.width) for n in result.nodes]

    rebase = await run()
    monkeypatch.setitem(STRATEGIES, "rebase", RebaseOnTheSharedLoop)
    assert await run() == rebase


def test_spent_samples_and_open_children_read_the_children_statuses() -> None:
    tree = SearchTree()
    children = [tree.add_child(tree.root, i, f"s{i}") for i in range(1, 6)]
    for child, status in zip(
        children, ["open", "finished", "unfinished", "failed", "open"], strict=True
    ):
        child.status = status  # type: ignore[assignment]
    assert spent_samples(children) == 2  # a failed expansion's sample stays in the pool
    assert open_children(children) == [children[0], children[4]]


async def test_sampling_and_beam_run_on_the_level_loop() -> None:
    assert issubclass(STRATEGIES["sampling"], LevelSearch)
    assert issubclass(STRATEGIES["beam"], LevelSearch)
    config = RebaseConfig(budget=8, beam_width=4, max_depth=2)
    strategies: tuple[StrategyName, ...] = ("sampling", "beam")
    for strategy in strategies:
        result = await solve(
            "p",
            provider=ScriptedProvider(depth=5),
            scorer=ScriptedScorer(),
            config=config,
            strategy=strategy,
        )
        assert result.stopped == "max_depth"
        deepest = [n.status for n in result.nodes if n.depth == 2]
        assert deepest and deepest == ["unfinished"] * len(deepest)
