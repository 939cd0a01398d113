"""Search strategies, one module each, behind one registry.

Every strategy has ``async run(expander) -> str`` (the reason it stopped) and grows the tree
through the same :class:`~rebase_agent.expansion.TreeExpander`, so they share requests, scoring,
token accounting and results.
"""

from __future__ import annotations

from typing import Protocol

from rebase_agent.config import StrategyName
from rebase_agent.expansion import TreeExpander
from rebase_agent.strategies.beam import BeamSearch
from rebase_agent.strategies.dvts import Dvts
from rebase_agent.strategies.mcts import Mcts
from rebase_agent.strategies.rebase import LevelSearch, Rebase
from rebase_agent.strategies.sampling import Sampling

__all__ = (
    "STRATEGIES",
    "BeamSearch",
    "Dvts",
    "LevelSearch",
    "Mcts",
    "Rebase",
    "Sampling",
    "Strategy",
)


class Strategy(Protocol):
    """A search strategy."""

    async def run(self, expander: TreeExpander) -> str:
        """Grow ``expander.tree``; return why the search stopped."""
        ...


STRATEGIES: dict[StrategyName, type[Strategy]] = {
    "rebase": Rebase,
    "sampling": Sampling,
    "beam": BeamSearch,
    "mcts": Mcts,
    "dvts": Dvts,
}
