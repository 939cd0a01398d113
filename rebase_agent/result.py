"""What a search returns: the answer, every finished candidate, the whole tree and the usage.

Everything is pydantic and round-trips through JSON::

    text = result.model_dump_json()
    assert SearchResult.model_validate_json(text) == result
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from rebase_agent.config import RebaseConfig, StrategyName
from rebase_agent.tree import NodeRecord
from rebase_agent.usage import Usage

__all__ = ("AnswerVote", "Candidate", "SearchResult")


class Candidate(BaseModel):
    """A finished solution."""

    node_id: int
    """The tree node whose step finished it."""
    answer: str | None
    """The extracted final answer; ``None`` when the solution states none (it cannot win)."""
    steps: list[str]
    step_scores: list[float]
    score: float
    """The aggregated score, read from ``step_scores`` as ``RebaseConfig.reward`` says."""

    @property
    def text(self) -> str:
        """The solution's text."""
        return "".join(self.steps)


class AnswerVote(BaseModel):
    """One class of equivalent answers and its votes."""

    answer: str
    """The answer as the best-scored member of the class wrote it."""
    count: int
    """Candidates with this answer (the majority vote)."""
    weight: float
    """Sum of their scores (the weighted majority vote)."""
    best_score: float
    """Their highest score (best-of-n)."""
    node_ids: list[int]


class SearchResult(BaseModel):
    """Everything one search found and spent."""

    problem: str
    strategy: StrategyName
    config: RebaseConfig
    answer: str | None
    """The chosen answer; ``None`` when no finished solution states one."""
    solution: str | None
    """The chosen solution's text."""
    chosen: int | None
    """Node id of the chosen solution."""
    candidates: list[Candidate] = Field(default_factory=list)
    """Every finished solution, in node order."""
    votes: list[AnswerVote] = Field(default_factory=list)
    """Answer classes, most votes (by ``config.aggregation``) first."""
    unfinished: int = 0
    """Paths still open when the search stopped; they never vote."""
    stopped: str = "done"
    """Why the search ended: ``done`` (budget spent or no open node), ``max_depth``,
    ``token_budget`` (MCTS), ``error`` or ``timeout``."""
    nodes: list[NodeRecord] = Field(default_factory=list)
    """The whole tree, in id order (node 0 is the problem)."""
    usage: Usage = Field(default_factory=Usage)

    def tree_shape(self) -> list[int]:
        """Number of nodes at each depth, root first."""
        shape: list[int] = []
        for node in self.nodes:
            while len(shape) <= node.depth:
                shape.append(0)
            shape[node.depth] += 1
        return shape
