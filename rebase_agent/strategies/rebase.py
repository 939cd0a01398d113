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

:func:`~rebase_agent.strategies.level.expand_level` and the budget accounting are shared
with sampling and beam search, which run this loop with another allocation
(:class:`~rebase_agent.strategies.level.LevelSearch`).
"""

from __future__ import annotations

from collections.abc import Sequence

from rebase_agent.allocation import allocate_widths
from rebase_agent.config import RebaseConfig
from rebase_agent.expansion import TreeExpander
from rebase_agent.strategies.level import expand_level, open_children, spent_samples
from rebase_agent.tree import Node

__all__ = ("Rebase",)


class Rebase:
    """Reward balanced search: the budget goes to nodes by softmax of their rewards."""

    async def run(self, expander: TreeExpander) -> str:
        """Grow ``expander.tree`` until the budget is spent; return why the search stopped."""
        config = expander.config
        budget = config.budget  # B
        frontier: list[Node] = [expander.tree.root]
        while True:
            # 1-2: split B over the open nodes by their rewards; width 0 prunes.
            widths = self.allocate(frontier, budget, config)
            # 3: one request per node, all at once; each child scored as soon as it exists.
            children = await expand_level(expander, frontier, widths)
            # 4: finished and token-capped paths leave the pool; the open ones go on.
            budget -= spent_samples(children)
            frontier = open_children(children)
            if budget <= 0 or not frontier:
                return expander.stop("done")
            if frontier[0].depth >= config.max_depth:
                return expander.stop("max_depth")  # the paths still open are unfinished

    def allocate(self, frontier: Sequence[Node], budget: int, config: RebaseConfig) -> list[int]:
        """Widths by ``exp(R / T_b)``, rounded as ``config.rounding`` says."""
        return allocate_widths(
            [node.reward for node in frontier],
            budget,
            temperature=config.balance_temperature,
            rounding=config.rounding,
            truncation_ratio=config.truncation_ratio,
        )
