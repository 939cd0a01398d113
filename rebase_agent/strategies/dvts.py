"""Diverse verifier tree search (DVTS), as in search-and-learn.

(``sal/search/diverse_verifier_tree_search.py``.)

The budget N is split into ``N / M`` independent subtrees (M = ``beam_width``). The problem gets
N children at depth 1, M per subtree. Then, at every depth, each live subtree keeps its
highest-scoring new child: if that child finished a solution the subtree stops, otherwise it gets
M children of its own and its other children are pruned. Subtrees never share budget, which is
what keeps the search diverse.

Unlike search-and-learn (its issue #57), only finished solutions are candidates; a subtree still
open at ``max_depth`` is reported as unfinished.
"""

from __future__ import annotations

from rebase_agent.expansion import TreeExpander
from rebase_agent.strategies.level import expand_level
from rebase_agent.tree import Node

__all__ = ("Dvts",)


class Dvts:
    """``budget / beam_width`` greedy subtrees, each expanding ``beam_width`` children a step."""

    async def run(self, expander: TreeExpander) -> str:
        """Grow the subtrees until each has finished or hit the depth cap."""
        config = expander.config
        width = config.beam_width
        children = await expand_level(expander, [expander.tree.root], [config.budget])
        # Subtree k starts from the root's children k*M .. k*M + M-1.
        subtrees = [children[i : i + width] for i in range(0, len(children), width)]
        while True:
            frontier: list[Node] = []
            for kids in subtrees:
                if not kids:  # its expansion failed: this subtree ends here
                    continue
                best = max(kids, key=lambda node: node.reward)  # first one on ties
                for node in kids:
                    if node is not best and node.status == "open":
                        expander.allocate(node, 0)  # pruned
                if best.status == "open":
                    frontier.append(best)
            if not frontier:
                return expander.stop("done")
            if frontier[0].depth >= config.max_depth:
                return expander.stop("max_depth")  # the paths still open are unfinished
            await expand_level(expander, frontier, [width] * len(frontier))
            subtrees = [node.children for node in frontier]
