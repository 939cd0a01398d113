"""Search strategies, one module each, behind one registry.

Every strategy has ``async run(expander) -> str`` (the reason it stopped) and grows the tree
through the same :class:`~rebase_agent.expansion.TreeExpander`, so they share requests, scoring,
token accounting and results. A strategy sets no node status itself: it tells the expander
(a node's width, a pruned node, and at the end ``expander.stop(reason)``, which reports the
paths still open as unfinished). REBASE, sampling and beam search are level searches
(:mod:`~rebase_agent.strategies.level`); DVTS grows its subtrees with the same machinery.
"""

from __future__ import annotations

from typing import Protocol

from rebase_agent.config import StrategyName
from rebase_agent.expansion import TreeExpander
from rebase_agent.strategies.beam import BeamSearch
from rebase_agent.strategies.dvts import Dvts
from rebase_agent.strategies.level import LevelSearch
from rebase_agent.strategies.mcts import Mcts
from rebase_agent.strategies.rebase import Rebase
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
        """Grow ``expander.tree``; return why the search stopped, through
        :meth:`~rebase_agent.expansion.TreeExpander.stop`, so that no path is left open."""
        ...


STRATEGIES: dict[StrategyName, type[Strategy]] = {
    "rebase": Rebase,
    "sampling": Sampling,
    "beam": BeamSearch,
    "mcts": Mcts,
    "dvts": Dvts,
}
