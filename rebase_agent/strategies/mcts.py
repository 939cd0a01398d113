"""Monte Carlo tree search over reasoning steps, the baseline of the REBASE paper.

Each iteration selects leaves by UCT, ``Q(c) + C · sqrt(ln N(parent) / N(c))`` with Q the running
mean of backed-up values, expands each with ``mcts_children`` children (the root with
``mcts_root_children``), values the new children with the PRM (the same reward reading as
REBASE), optionally rolls out from the best new child to a finished solution, and backs the value
up the path: the rollout's final reward, into the child the rollout started from and every node
above it, or without rollouts the best new child's reward, from the expanded node up.

Selection is batched: ``mcts_batch_size`` leaves are chosen at once, each pending path taking a
virtual loss (one visit of value 0) so the next selection in the batch prefers other leaves, and
all of them are expanded concurrently. Batch size 1 is classic sequential MCTS. Ids and seeds are
reserved in plan order before any await and the batch's rollouts advance in step, so a seeded
search does not depend on the order responses arrive in.

The budget is ``mcts_expansions`` tree expansions (one provider request each; ``None`` means
``budget``) and optionally ``mcts_token_budget`` completion tokens; rollout requests count as
tokens, not expansions. Every finished solution met, rollouts included, is a candidate for the
same voting as the other strategies; paths still open at the end are reported as unfinished.
"""

from __future__ import annotations

import math

from rebase_agent.exceptions import RebaseError
from rebase_agent.expansion import TreeExpander
from rebase_agent.tree import Node

__all__ = ("Mcts", "uct_score")


def uct_score(child: Node, parent_visits: int, exploration: float) -> float:
    """UCT of ``child``: infinite when unvisited, so every child is tried once."""
    if child.visits == 0:
        return math.inf
    mean = child.value_sum / child.visits
    return mean + exploration * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


class Mcts:
    """Batched MCTS with virtual loss, PRM values and optional rollouts."""

    def __init__(self) -> None:
        self._exhausted: set[int] = set()

    async def run(self, expander: TreeExpander) -> str:
        """Run iterations until the expansion or token budget is spent, or the tree is done."""
        config = expander.config
        expansions_left = config.mcts_expansions or config.budget
        root = expander.tree.root
        while expansions_left > 0 and root.id not in self._exhausted:
            if (
                config.mcts_token_budget is not None
                and expander.usage.completion_tokens >= config.mcts_token_budget
            ):
                return expander.stop("token_budget")  # the paths still open are unfinished
            leaves = self.select(root, min(config.mcts_batch_size, expansions_left), expander)
            if not leaves:
                break
            expansions_left -= len(leaves)
            await self._batch(expander, leaves)
        return expander.stop("done")

    async def _batch(self, expander: TreeExpander, leaves: list[Node]) -> None:
        """Expand ``leaves`` concurrently, roll out from their best children, back up.

        The expansions and the rollouts are one round of the expander. Ids (and the seeds
        derived from them) are reserved in plan order before anything is awaited, and the
        batch's rollouts advance one step at a time together, so a seeded search is the same
        whatever order the responses arrive in; values are backed up in plan order once the
        batch is done.
        """
        config = expander.config
        plan = [(leaf, expander.tree.reserve_ids(self._width(leaf, expander))) for leaf in leaves]
        with expander.round(plan) as this_round:
            outcomes = await expander.expand_each(plan, into=this_round)
            starts: list[Node | None] = []
            for leaf, out in zip(leaves, outcomes, strict=True):
                self._virtual_loss(leaf, -1)
                if isinstance(out, RebaseError):  # recorded by the round
                    self._mark_exhausted(leaf)
                    starts.append(None)
                    continue
                for child in out:  # the PRM's value of each new child is its first visit
                    child.visits, child.value_sum = 1, child.reward
                starts.append(max(out, key=lambda c: c.reward))
            ends = await self._rollouts(expander, starts) if config.mcts_rollout else starts
        for leaf, start, end in zip(leaves, starts, ends, strict=True):
            if start is None or end is None:
                continue
            if end is start:  # no rollout: the best new child's reward, from the leaf up
                self._backup(leaf, start.reward)
            else:  # a rollout's value goes into the child it started from, and up
                self._backup(start, end.reward)

    async def _rollouts(
        self, expander: TreeExpander, starts: list[Node | None]
    ) -> list[Node | None]:
        """Sample one step at a time from each open start to a finished solution or the depth
        cap, the batch's rollouts advancing together; return each one's last scored node (the
        start itself where there was nothing to roll out)."""
        ends = list(starts)
        stopped: set[int] = set()
        max_depth = expander.config.max_depth
        while True:
            rolling: list[int] = []
            plan: list[tuple[Node, range]] = []
            for i, node in enumerate(ends):  # ids reserved in plan order, before any await
                if node is None or i in stopped:
                    continue
                if node.status != "open" or node.depth >= max_depth:
                    continue
                if node.rollout:
                    expander.allocate(node, 1)
                rolling.append(i)
                plan.append((node, expander.tree.reserve_ids(1)))
            if not plan:
                return ends
            outcomes = await expander.expand_each(plan, rollout=True)
            for i, (node, _), out in zip(rolling, plan, outcomes, strict=True):
                if isinstance(out, RebaseError):  # the rollout ends at its last scored node
                    if node.rollout:
                        expander.record_failure(node, out)
                    else:  # the tree node it started from keeps its status
                        expander.usage.failed_expansions += 1
                    stopped.add(i)
                else:
                    (ends[i],) = out

    def select(self, root: Node, count: int, expander: TreeExpander) -> list[Node]:
        """Pick up to ``count`` distinct leaves to expand, with virtual loss on each path.

        A path that ends on a finished node (or one that used ``max_solution_tokens``), or on an
        open node at the depth cap, has nothing to expand: the node is marked exhausted, like a
        subtree whose nodes all are, and is never selected again.
        """
        exploration = expander.config.mcts_exploration
        leaves: list[Node] = []
        for _ in range(count):
            node = root
            while node.children:
                candidates = [c for c in node.children if c.id not in self._exhausted]
                if not candidates:
                    self._mark_exhausted(node)
                    break
                node = max(candidates, key=lambda c: uct_score(c, node.visits, exploration))
            if root.id in self._exhausted:
                break
            if node.id in self._exhausted:
                continue
            if node.status != "open" or node.depth >= expander.config.max_depth:
                self._mark_exhausted(node)
                continue
            if node in leaves:
                break  # the batch already holds every leaf worth trying now
            self._virtual_loss(node, +1)
            leaves.append(node)
        return leaves

    @staticmethod
    def _width(leaf: Node, expander: TreeExpander) -> int:
        config = expander.config
        return config.mcts_root_children if leaf.parent is None else config.mcts_children

    @staticmethod
    def _backup(node: Node | None, value: float) -> None:
        """Add one visit of ``value`` to ``node`` and every ancestor (running means)."""
        while node is not None:
            node.visits += 1
            node.value_sum += value
            node = node.parent

    @staticmethod
    def _virtual_loss(node: Node | None, sign: int) -> None:
        """Add (``+1``) or remove (``-1``) a pending visit of value 0 along the path."""
        while node is not None:
            node.visits += sign
            node = node.parent

    def _mark_exhausted(self, node: Node) -> None:
        """``node`` has nothing left to expand; so may its ancestors."""
        self._exhausted.add(node.id)
        parent = node.parent
        while parent is not None and all(c.id in self._exhausted for c in parent.children):
            self._exhausted.add(parent.id)
            parent = parent.parent
