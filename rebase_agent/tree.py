"""The search tree: nodes are reasoning steps, a path from the root is a partial solution.

``Node`` is the plain, mutable object the strategies work on; :class:`NodeRecord` is its
serialisable form in a :class:`~rebase_agent.SearchResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from rebase_agent.protocols import FinishReason

__all__ = ("Node", "NodeRecord", "NodeStatus", "SearchTree")

NodeStatus = Literal["open", "expanded", "pruned", "finished", "unfinished", "failed"]
"""``open``: waiting for the next allocation; ``expanded``: got children; ``pruned``: got width 0;
``finished``: its step ended the solution (a final answer, the end of output, or an empty step);
``unfinished``: still open when the search stopped (depth cap, budget spent, time out), or its
path reached ``max_solution_tokens`` without a final answer; ``failed``: its expansion's
request finally failed (see ``error``), or it was sampled but could not be scored.

Only :class:`~rebase_agent.expansion.TreeExpander` sets a node's status, for the strategy that
drives it (see :mod:`rebase_agent.expansion`)."""


@dataclass(eq=False)
class Node:
    """One reasoning step in the tree (the root holds the problem and no step)."""

    id: int
    parent: Node | None
    depth: int
    step: str = ""
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    solution_tokens: int = 0
    """Generated tokens on the path to this node, its own step included."""
    continuations: int = 0
    """Requests beyond the first that this step took (see ``StepCompletion.continuations``)."""
    continuation_context_tokens: int = 0
    """Over those continuations, the step's own generated tokens each one sent."""
    step_scores: list[float] = field(default_factory=list)
    """The scorer's scores for every step on the path to this node, as returned when scored."""
    reward: float = 0.0
    """The node's reward R, read from ``step_scores`` (see ``RebaseConfig.reward``)."""
    answer: str | None = None
    status: NodeStatus = "open"
    width: int = 0
    """Children allocated to this node."""
    rollout: bool = False
    """Sampled by an MCTS rollout: in the trace, but never selected or expanded."""
    visits: int = 0
    """MCTS: times a value was backed up through this node."""
    value_sum: float = 0.0
    """MCTS: sum of the values backed up through this node (its value is the running mean)."""
    error: str | None = None
    """Why this node's expansion failed."""
    children: list[Node] = field(default_factory=list)
    """Children in the search tree (rollout nodes are not listed)."""

    @property
    def steps(self) -> tuple[str, ...]:
        """The steps from the root to this node."""
        path: list[str] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            path.append(node.step)
            node = node.parent
        return tuple(reversed(path))

    def record(self) -> NodeRecord:
        """This node's serialisable form."""
        return NodeRecord(
            id=self.id,
            parent=None if self.parent is None else self.parent.id,
            depth=self.depth,
            step=self.step,
            finish_reason=self.finish_reason,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            continuations=self.continuations,
            continuation_context_tokens=self.continuation_context_tokens,
            step_scores=list(self.step_scores),
            reward=self.reward,
            answer=self.answer,
            status=self.status,
            width=self.width,
            rollout=self.rollout,
            visits=self.visits,
            value=self.value_sum / self.visits if self.visits else None,
            error=self.error,
        )


class NodeRecord(BaseModel):
    """A node of the search tree, as stored in a result."""

    id: int
    parent: int | None
    depth: int
    step: str
    finish_reason: FinishReason | None
    prompt_tokens: int
    completion_tokens: int
    continuations: int = 0
    """Requests beyond the first that this step took (a calculator's continuations)."""
    continuation_context_tokens: int = 0
    """Over those continuations, the step's own generated tokens each one sent."""
    step_scores: list[float]
    reward: float
    answer: str | None
    status: NodeStatus
    width: int
    rollout: bool = False
    visits: int = 0
    value: float | None = None
    """MCTS: the running mean of backed-up values."""
    error: str | None = None
    """Why this node's expansion failed."""


class SearchTree:
    """All nodes of one search, with ids handed out in creation order."""

    def __init__(self) -> None:
        self.root = Node(id=0, parent=None, depth=0)
        self.nodes: list[Node] = [self.root]
        self._next_id = 1

    def reserve_ids(self, count: int) -> range:
        """Reserve ids for ``count`` children before they are sampled.

        Ids are handed out when a round of expansions is planned, not when responses arrive, so
        a search's node ids (and the seeds derived from them) do not depend on timing.
        """
        ids = range(self._next_id, self._next_id + count)
        self._next_id += count
        return ids

    def add_child(self, parent: Node, node_id: int, step: str, *, rollout: bool = False) -> Node:
        """Attach a sampled step to ``parent`` as a new node."""
        child = Node(id=node_id, parent=parent, depth=parent.depth + 1, step=step, rollout=rollout)
        self.nodes.append(child)
        if not rollout:
            parent.children.append(child)
        return child

    def records(self) -> list[NodeRecord]:
        """Every node, in id order."""
        return [node.record() for node in sorted(self.nodes, key=lambda n: n.id)]
