"""Level-synchronous search: the open nodes of one depth are expanded together, in one round.

This is the machinery REBASE (:mod:`~rebase_agent.strategies.rebase`), sampling and beam
search share, and DVTS grows its subtrees with. At each depth the strategy gives every open node
a width; :func:`expand_level` prunes the nodes with width 0 and expands the others in one round;
the children that finished a solution, or used up ``max_solution_tokens``, take their sample out
of the budget for good (:func:`spent_samples`), and the ones still open
(:func:`open_children`) are the next depth's frontier.

:class:`LevelSearch` is the REBASE loop with the allocation left open: sampling and beam search
(:mod:`~rebase_agent.strategies.sampling`, :mod:`~rebase_agent.strategies.beam`) fill it in
differently, so they are compared with REBASE on the same machinery and the same accounting.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from rebase_agent.config import RebaseConfig
from rebase_agent.expansion import TreeExpander
from rebase_agent.tree import Node

__all__ = ("LevelSearch", "expand_level", "open_children", "spent_samples")


async def expand_level(
    expander: TreeExpander, frontier: Sequence[Node], widths: Sequence[int]
) -> list[Node]:
    """Give each node of ``frontier`` its width and expand the level in one round.

    A node with width 0 is pruned; the others get their children concurrently (see
    :meth:`TreeExpander.expand_round <rebase_agent.expansion.TreeExpander.expand_round>`).

    Returns:
        The new children, in id order.
    """
    plan = []
    for node, width in zip(frontier, widths, strict=True):
        if width > 0:
            plan.append((node, width))
        else:
            expander.allocate(node, 0)
    return await expander.expand_round(plan)


def spent_samples(children: Sequence[Node]) -> int:
    """Samples that ``children`` took out of the budget for good: finished paths and paths
    that used up ``max_solution_tokens`` (a failed expansion's sample stays in the pool)."""
    return sum(child.status in ("finished", "unfinished") for child in children)


def open_children(children: Sequence[Node]) -> list[Node]:
    """The children that are still open: the next depth's frontier."""
    return [child for child in children if child.status == "open"]


class LevelSearch(ABC):
    """A level-synchronous tree search over reasoning steps; subclasses allocate the budget."""

    async def run(self, expander: TreeExpander) -> str:
        """Grow ``expander.tree`` until the budget is spent; return why the search stopped."""
        config = expander.config
        budget = config.budget
        frontier: list[Node] = [expander.tree.root]
        while True:
            widths = self.allocate(frontier, budget, config)
            children = await expand_level(expander, frontier, widths)
            budget -= spent_samples(children)
            frontier = open_children(children)
            if budget <= 0 or not frontier:
                return expander.stop("done")
            if frontier[0].depth >= config.max_depth:
                return expander.stop("max_depth")  # the paths still open are unfinished

    @abstractmethod
    def allocate(self, frontier: Sequence[Node], budget: int, config: RebaseConfig) -> list[int]:
        """Children for each open node; the widths sum to at most ``budget``."""
