"""From a search result to graded outcomes: every aggregation, every budget it answers.

Answer classes are computed once per search (math-verify, as in voting), and every distinct
answer is graded once against the gold; each aggregation's pick at each budget is then a lookup.

Sub-sampling is honest only for independent samples: a sampling search at N has N root children,
each the start of its own path, so its first k root children and everything below them are a
sampling run at k. Their policy tokens are summed node by node, except the problem's prompt: a
run at any k reads it once, so the whole prompt cost of the first request (however the provider
shared it out over its N completions) is counted in full. Scorer tokens, which the result keeps
only in total, are shared out in proportion to the nodes kept.

Besides the tokens the provider reported (whose prompt part depends on its cache, and so on
what else ran beside the search), every outcome carries a cost read from the tree alone
(:func:`request_costs`): the provider requests, and for each one the generated tokens of the
partial solution it sent. A cache-less server evaluates, for each request, the problem's prompt
plus those tokens; the report adds the problem's prompt length per request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from rebase_agent.config import Aggregation
from rebase_agent.equivalence import group_answers
from rebase_agent.evaluation.grading import Grade, grade_answers
from rebase_agent.evaluation.results import AGGREGATIONS, BudgetOutcome, VoteOutcome
from rebase_agent.result import Candidate, SearchResult
from rebase_agent.tree import NodeRecord
from rebase_agent.voting import vote

__all__ = ("RequestCosts", "any_correct", "grade_result", "request_costs", "subsample_nodes")


def subsample_nodes(nodes: Sequence[NodeRecord], k: int) -> set[int]:
    """Ids of the nodes under the first ``k`` root children (the root excluded)."""
    children: dict[int, list[int]] = {}
    for node in nodes:
        if node.parent is not None:
            children.setdefault(node.parent, []).append(node.id)
    keep: set[int] = set()
    stack = sorted(children.get(0, []))[:k]
    while stack:
        node_id = stack.pop()
        keep.add(node_id)
        stack.extend(children.get(node_id, []))
    return keep


class RequestCosts(NamedTuple):
    """What a search's requests cost, read from its tree."""

    requests: int
    """Provider requests that returned steps (each ``n > 1`` request once, and each
    continuation of a step once)."""
    context_tokens: int
    """Over those requests, the generated tokens of the partial solution each one sent (the
    steps before the new one, and a continuation's step so far): its prompt beyond the
    problem's."""
    root_prompt_tokens: int
    """Prompt tokens the provider reported for the first request (the problem alone)."""


def request_costs(nodes: Sequence[NodeRecord], keep: set[int] | None = None) -> RequestCosts:
    """Requests and their cache-less context among ``nodes`` (or the ids in ``keep``).

    The children of one request share a parent and are all rollout steps or none (MCTS may
    roll out from a node and later expand it: two requests), so a request is a
    ``(parent, rollout)`` group. Its context is the generated tokens on the path to the parent.
    A step that took more requests (a calculator's continuations, ``NodeRecord.continuations``)
    adds each of them, with the path to its parent and the step's own tokens it sent.
    """
    by_id = {node.id: node for node in nodes}
    path_tokens: dict[int, int] = {}
    for node in sorted(nodes, key=lambda n: n.id):  # a parent's id is below its children's
        above = 0 if node.parent is None else path_tokens.get(node.parent, 0)
        path_tokens[node.id] = above + (0 if node.parent is None else node.completion_tokens)
    groups: set[tuple[int, bool]] = set()
    root_prompt = continuations = continued = 0
    for node in nodes:
        if node.parent is None:
            continue
        if node.parent == 0 and not node.rollout:
            root_prompt += node.prompt_tokens
        if keep is None or node.id in keep:
            groups.add((node.parent, node.rollout))
            continuations += node.continuations
            above = path_tokens.get(node.parent, 0)
            continued += node.continuations * above + node.continuation_context_tokens
    context = sum(path_tokens.get(parent, 0) for parent, _ in groups if parent in by_id)
    return RequestCosts(len(groups) + continuations, context + continued, root_prompt)


def any_correct(
    result: SearchResult, grades: Sequence[Grade], budget: int, *, subsampled: bool
) -> bool | None:
    """Whether some finished solution at ``budget`` has a right answer (pass@N), from the
    search and its graded answers; ``None`` when a sub-sampled budget needs the tree and the
    row kept none."""
    candidates: Sequence[Candidate] = result.candidates
    if subsampled:
        if not result.nodes:
            return None
        keep = subsample_nodes(result.nodes, budget)
        candidates = [c for c in candidates if c.node_id in keep]
    return _covered(candidates, {g.answer: g.correct for g in grades})


def _covered(candidates: Sequence[Candidate], verdict: Mapping[str | None, bool]) -> bool:
    return any(verdict.get(c.answer, False) for c in candidates if c.answer is not None)


async def _pick(
    candidates: Sequence[Candidate], classes: dict[int, str], aggregation: Aggregation
) -> str | None:
    """The answer ``aggregation`` picks, voting on answer-class representatives."""
    voters = [
        c.model_copy(update={"answer": classes[c.node_id]})
        for c in candidates
        if c.node_id in classes
    ]
    chosen, _ = await vote(voters, aggregation=aggregation, equivalence="normalized")
    if chosen is None:
        return None
    original = {c.node_id: c.answer for c in candidates}
    return original[chosen.node_id]


async def grade_result(
    result: SearchResult,
    gold: str,
    budgets: Sequence[int],
    *,
    subsample: bool,
    grade_timeout_s: float = 5.0,
) -> tuple[list[BudgetOutcome], list[Grade]]:
    """Grade a search's picks under every aggregation, at each of ``budgets``.

    Args:
        result: A finished (or timed-out) search; sub-sampling needs its ``nodes``.
        gold: The gold answer.
        budgets: Budgets to answer; with ``subsample``, those below the search's own are read
            from its first k paths (only honest for the sampling strategy).
        subsample: Whether ``budgets`` below the search's budget are sub-sampled.
        grade_timeout_s: Time limit of one math-verify comparison.

    Returns:
        One outcome per budget, and the grade of every distinct answer.
    """
    config = result.config
    voters = [c for c in result.candidates if c.answer is not None]
    labels = await group_answers(
        [c.answer for c in voters if c.answer is not None],
        method=config.answer_equivalence,
        timeout_s=config.answer_timeout_s,
    )
    first: dict[int, str] = {}
    classes: dict[int, str] = {}
    for label, c in zip(labels, voters, strict=True):
        classes[c.node_id] = first.setdefault(label, c.answer or "")
    distinct = list(dict.fromkeys(c.answer for c in voters if c.answer is not None))
    grades = await grade_answers(distinct, gold, timeout_s=grade_timeout_s)
    verdict = {g.answer: g.correct for g in grades}

    usage = result.usage
    scorer_total = usage.scorer_prompt_tokens + usage.scorer_completion_tokens
    outcomes: list[BudgetOutcome] = []
    for budget in budgets:
        partial = subsample and budget < config.budget
        if partial:
            keep = subsample_nodes(result.nodes, budget)
            candidates = [c for c in result.candidates if c.node_id in keep]
            kept = [n for n in result.nodes if n.id in keep]
            share = len(kept) / max(1, len(result.nodes) - 1)
            opening = [n for n in result.nodes if n.parent == 0]  # the first request's children
            prompt = sum(n.prompt_tokens for n in opening)
            prompt += sum(n.prompt_tokens for n in kept if n.parent != 0)
            completion = sum(n.completion_tokens for n in kept)
            scorer = round(scorer_total * share)
            costs = request_costs(result.nodes, keep)
        else:
            candidates = list(result.candidates)
            prompt, completion, scorer = usage.prompt_tokens, usage.completion_tokens, scorer_total
            costs = request_costs(result.nodes)
        votes: dict[Aggregation, VoteOutcome] = {}
        for aggregation in AGGREGATIONS:
            answer = await _pick(candidates, classes, aggregation)
            correct = answer is not None and verdict.get(answer, False)
            votes[aggregation] = VoteOutcome(answer=answer, correct=correct)
        outcomes.append(
            BudgetOutcome(
                budget=budget,
                subsampled=partial,
                finished=len(candidates),
                prompt_tokens=prompt,
                completion_tokens=completion,
                scorer_tokens=scorer,
                requests=costs.requests,
                context_tokens=costs.context_tokens,
                root_prompt_tokens=costs.root_prompt_tokens,
                votes=votes,
                any_correct=_covered(candidates, verdict),
            )
        )
    return outcomes, grades
