"""Choosing the final answer from finished solutions.

* ``majority``: the answer class with the most solutions;
* ``weighted_majority``: the class with the largest sum of scores (REBASE's default; assumes
  non-negative scores such as PRM probabilities);
* ``best_of_n``: the single best-scored solution.

Only solutions with an extracted answer vote. Ties go to the other two criteria, then to the
class seen first. Within the winning class the best-scored solution is the one returned.
"""

from __future__ import annotations

from collections.abc import Sequence

from rebase_agent.config import Aggregation, AnswerEquivalence
from rebase_agent.equivalence import group_answers
from rebase_agent.result import AnswerVote, Candidate

__all__ = ("vote",)


async def vote(
    candidates: Sequence[Candidate],
    *,
    aggregation: Aggregation,
    equivalence: AnswerEquivalence = "math_verify",
    timeout_s: float = 5.0,
) -> tuple[Candidate | None, list[AnswerVote]]:
    """Pick the winning candidate and tally every answer class.

    Returns:
        The chosen candidate (``None`` when no candidate has an answer) and the answer classes,
        best first by ``aggregation``.
    """
    voters = [c for c in candidates if c.answer is not None]
    if not voters:
        return None, []
    labels = await group_answers(
        [c.answer for c in voters if c.answer is not None], method=equivalence, timeout_s=timeout_s
    )
    classes: dict[int, list[Candidate]] = {}
    for label, candidate in zip(labels, voters, strict=True):
        classes.setdefault(label, []).append(candidate)

    tallies = [_tally(members) for members in classes.values()]
    if aggregation == "majority":
        order = sorted(tallies, key=lambda v: (-v.count, -v.weight, -v.best_score))
    elif aggregation == "weighted_majority":
        order = sorted(tallies, key=lambda v: (-v.weight, -v.count, -v.best_score))
    else:
        order = sorted(tallies, key=lambda v: (-v.best_score, -v.weight, -v.count))
    winner_ids = set(order[0].node_ids)
    chosen = _best([c for c in voters if c.node_id in winner_ids])
    return chosen, order


def _best(candidates: Sequence[Candidate]) -> Candidate:
    """The best-scored candidate; the first one on ties."""
    best = candidates[0]
    for candidate in candidates[1:]:
        if candidate.score > best.score:
            best = candidate
    return best


def _tally(members: list[Candidate]) -> AnswerVote:
    best = _best(members)
    return AnswerVote(
        answer=best.answer or "",
        count=len(members),
        weight=sum(c.score for c in members),
        best_score=best.score,
        node_ids=[c.node_id for c in members],
    )
