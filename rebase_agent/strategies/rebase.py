"""REBASE: reward balanced search (Wu et al., "Inference Scaling Laws", ICLR 2025).

The search is level-synchronous. At each depth:

1. every open node already has a reward R from the process reward model;
2. the remaining budget B is split over the open nodes by ``exp(R / T_b)``
   (:func:`~rebase_agent.allocation.allocate_widths`); a node with width 0 is pruned;
3. every node with width W gets W children from one provider request, all nodes concurrently,
   each child scored as soon as it exists;
4. children that finish a solution (a final answer, or the end of output) leave the pool, and
   each one takes 1 from B for good, as does a path that used up ``max_solution_tokens``
   (reported unfinished); the rest are the next depth's open nodes.

It ends when B reaches 0 or no node is open (the widths always sum to B, so these are the same),
or at ``max_depth``, where nodes still open are reported as unfinished. There are no rollouts.

:class:`LevelSearch` is that loop with step 2 left open; sampling and beam search
(:mod:`~rebase_agent.strategies.sampling`, :mod:`~rebase_agent.strategies.beam`) fill it in
differently, so all three are compared on the same machinery and the same accounting.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from rebase_agent.allocation import allocate_widths
from rebase_agent.config import RebaseConfig
from rebase_agent.expansion import TreeExpander
from rebase_agent.tree import Node

__all__ = ("LevelSearch", "Rebase")


class LevelSearch(ABC):
    """A level-synchronous tree search over reasoning steps; subclasses allocate the budget."""

    async def run(self, expander: TreeExpander) -> str:
        """Grow ``expander.tree`` until the budget is spent; return why the search stopped."""
        config = expander.config
        budget = config.budget
        frontier: list[Node] = [expander.tree.root]
        while True:
            widths = self.allocate(frontier, budget, config)
            plan = []
            for node, width in zip(frontier, widths, strict=True):
                node.width = width
                node.status = "expanded" if width > 0 else "pruned"
                if width > 0:
                    plan.append((node, width))
            children = await expander.expand_round(plan)
            # Finished and token-capped paths are spent samples; failed ones are not.
            budget -= sum(child.status in ("finished", "unfinished") for child in children)
            frontier = [child for child in children if child.status == "open"]
            if budget <= 0 or not frontier:
                return "done"
            if frontier[0].depth >= config.max_depth:
                for node in frontier:
                    node.status = "unfinished"
                return "max_depth"

    @abstractmethod
    def allocate(self, frontier: Sequence[Node], budget: int, config: RebaseConfig) -> list[int]:
        """Children for each open node; the widths sum to at most ``budget``."""


class Rebase(LevelSearch):
    """Reward balanced search: the budget goes to nodes by softmax of their rewards."""

    def allocate(self, frontier: Sequence[Node], budget: int, config: RebaseConfig) -> list[int]:
        """Widths by ``exp(R / T_b)``, rounded as ``config.rounding`` says."""
        return allocate_widths(
            [node.reward for node in frontier],
            budget,
            temperature=config.balance_temperature,
            rounding=config.rounding,
            truncation_ratio=config.truncation_ratio,
        )
