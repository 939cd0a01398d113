"""Scorers that need no model, and a way to combine scorers.

* :class:`ArithmeticScorer` is a process reward that checks arithmetic: every equation a step
  writes is checked exactly (:func:`rebase_agent.claims.find_claims`), and a path that has made a
  false claim scores ``false`` from that step on, like a PRM's P(path still correct).
* :class:`ProductScorer` asks several scorers at once and multiplies their scores step by step,
  e.g. ``ProductScorer(model_prm, ArithmeticScorer())``: the model's judgement, vetoed where the
  arithmetic is wrong.

Example::

    scorer = ProductScorer(my_prm, ArithmeticScorer(unchecked=1.0))
    result = await solve(problem, provider=provider, scorer=scorer)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Literal, get_args

import anyio
import anyio.lowlevel
import anyio.to_thread
from anyio.abc import TaskGroup

from rebase_agent.answers import extract_answer, normalize_answer
from rebase_agent.backends import aclose
from rebase_agent.claims import Claim, Verdict, find_claims, step_claims, verdict_of
from rebase_agent.exceptions import ScoringError
from rebase_agent.grounding import GroundingScorer
from rebase_agent.protocols import Scorer, ScoreRequest
from rebase_agent.rewards import finite_score

__all__ = (
    "CHECKS",
    "DEFAULT_CHECK",
    "INLINE_CHARS",
    "ArithmeticScorer",
    "Check",
    "ProductScorer",
    "describe",
    "with_check",
)

Check = Literal["grounded", "arithmetic", "none"]
"""A tool check to multiply a scorer's step scores by: ``grounded`` (the arithmetic check and the
grounding check of :mod:`rebase_agent.grounding`), ``arithmetic`` (:class:`ArithmeticScorer`
alone) or ``none``."""
CHECKS: tuple[str, ...] = get_args(Check)
DEFAULT_CHECK: Check = "grounded"
"""The check every command applies unless told otherwise."""

INLINE_CHARS = 20_000
"""Requests with more text than this are checked in a worker thread, not on the event loop."""


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
_ANSWER_NUMBER = re.compile(r"\$?(-?\d+(?:\.\d+)?(?:/\d+)?)(?:\s*%|(?:\s+[A-Za-z]+){0,2})")


def _number(text: str) -> tuple[Fraction, str] | None:
    """The value of an answer that is a plain number, perhaps with a unit (``1,200``, ``-3.5``,
    ``3/4``, ``$12``, ``42 apples``), and its number as written; else ``None``."""
    cleaned = normalize_answer(text).replace(",", "")
    match = _ANSWER_NUMBER.fullmatch(cleaned)
    if match is None:
        return None
    try:
        return Fraction(match.group(1)), match.group(1)
    except (ValueError, ZeroDivisionError):
        return None


def _numbers_in(text: str) -> set[Fraction]:
    return {Fraction(m) for m in _NUMBER.findall(text.replace(",", "")) if "/" not in m}


_SENTENCES = re.compile(r"(?<=[.!?])\s+")


@lru_cache(maxsize=1024)
def _asked_claim(problem: str, answer: str) -> Claim | None:
    """``"What is 6 * 7?"`` answered ``54``: the claim ``6 * 7 = 54``, checked, when the
    problem's last sentence ends with an arithmetic expression; else ``None``."""
    stem = _SENTENCES.split(problem.strip())[-1].rstrip(" ?.!:")
    text = f"{stem} = {answer}"
    for claim in find_claims(text):
        if claim.start < len(stem) and claim.end == len(text):
            return claim
    return None


def _answer_verdict(answer: str, problem: str, seen: Sequence[Claim]) -> Verdict | None:
    """What a stated final answer adds to its step's verdict (see :class:`ArithmeticScorer`):
    checked against the question's expression when it asks for one, else against the path's
    claims so far (``seen``); ``None`` when it adds nothing."""
    number = _number(answer)
    if number is None:
        # the question asks for a number; this answer is none
        return "false" if _asked_claim(problem, "0") is not None else None
    value, written = number
    asked = _asked_claim(problem, written)
    if asked is not None:
        return "verified" if asked.holds else "false"
    if not seen:
        return None
    if value in (seen[-1].right, seen[-1].left):
        return "verified"
    if value not in {v for c in seen for v in (c.left, c.right)} | _numbers_in(problem):
        return "false"
    return None


class ArithmeticScorer:
    """A process reward that checks every arithmetic claim of every step, exactly.

    A step scores ``verified`` when it makes at least one checkable claim and all of them hold,
    ``unchecked`` when it makes none (prose, a variable, an approximation), and ``false`` when
    one of them is false. Scores are path-aware: once a step of a path makes a false claim, that
    step and every later step of the path score ``false``, so REBASE's default ``last``-step
    reward does not forget an earlier error. See :mod:`rebase_agent.claims` for what is read,
    the rounding rule, and what is skipped as unsure.

    A step that states a numeric final answer (``The answer is 42``) is checked too. When the
    problem asks for the value of an expression (its last sentence ends with one: ``What is
    6 * 7?``), the answer is that claim (``6 * 7 = 42``), ``verified`` or ``false`` (an answer
    that is not a number is ``false``: ``The answer is 100 - 3 =``). Otherwise it
    is checked against the path's arithmetic: ``verified`` when it is the result of the path's
    last claim, ``false`` when the path made claims and the answer is no number of them nor of
    the problem (``6 * 7 = 42`` then ``The answer is 54``), ``unchecked`` otherwise.

    The checks are pure Python and fast (a few milliseconds for a step of a few hundred
    tokens, and cached by step text), so they run on the event loop, each call one cancellation
    point; a request of more than :data:`INLINE_CHARS` characters runs in a worker thread.

    Args:
        verified: Score of a step whose claims all hold (and no earlier step's failed).
        unchecked: Score of a step with no checkable claim (and no earlier false one).
        false: Score of a step with a false claim, and of every later step of its path.

    Raises:
        ValueError: A score is not a finite number.
    """

    def __init__(
        self, *, verified: float = 1.0, unchecked: float = 0.5, false: float = 0.0
    ) -> None:
        self.verified = finite_score("ArithmeticScorer", "verified", verified)
        self.unchecked = finite_score("ArithmeticScorer", "unchecked", unchecked)
        self.false = finite_score("ArithmeticScorer", "false", false)

    def __repr__(self) -> str:
        return (
            f"ArithmeticScorer(verified={self.verified}, unchecked={self.unchecked}, "
            f"false={self.false})"
        )

    async def score(self, request: ScoreRequest) -> list[list[float]]:
        """One score per step of each solution; see the class documentation."""
        size = sum(len(step) for steps in request.solutions for step in steps)
        if size <= INLINE_CHARS:
            await anyio.lowlevel.checkpoint()
            return [self.path_scores(steps, request.problem) for steps in request.solutions]
        return await anyio.to_thread.run_sync(
            lambda: [self.path_scores(steps, request.problem) for steps in request.solutions]
        )

    def path_scores(self, steps: Sequence[str], problem: str = "") -> list[float]:
        """The scores of one path's steps, root side first (``problem``: its numbers are the
        ones a final answer may restate without a claim)."""
        scores: list[float] = []
        failed = False
        seen: list[Claim] = []
        for step in steps:
            claims = step_claims(step)
            seen += claims
            verdict = verdict_of(claims)
            answer = extract_answer(step)
            if answer is not None and verdict != "false":
                verdict = _answer_verdict(answer, problem, seen) or verdict
            failed = failed or verdict == "false"
            if failed:
                scores.append(self.false)
            elif verdict == "verified":
                scores.append(self.verified)
            else:
                scores.append(self.unchecked)
        return scores


class ProductScorer:
    """Several scorers as one: the elementwise product of their step scores.

    Every inner scorer gets the same request, all concurrently (one task group); the first
    failure cancels the others and is raised as it was, with a note naming the scorer. Token
    usage that inner scorers report with :func:`rebase_agent.record_scorer_tokens` still reaches
    the search, since the inner calls run in copies of the caller's context.

    Args:
        *scorers: The scorers to combine; at least one.

    Raises:
        ValueError: No scorer was given.
    """

    def __init__(self, *scorers: Scorer) -> None:
        if not scorers:
            raise ValueError("ProductScorer needs at least one scorer")
        self.scorers: tuple[Scorer, ...] = scorers

    def __repr__(self) -> str:
        return f"ProductScorer({', '.join(map(repr, self.scorers))})"

    async def score(self, request: ScoreRequest) -> list[list[float]]:
        """Score ``request`` with every inner scorer and multiply the scores step by step.

        Raises:
            ScoringError: An inner scorer returned scores of the wrong shape, or a value that is
                not a finite number; the message names the scorer.
        """
        results: dict[int, object] = {}
        errors: list[Exception] = []

        async def run(index: int, scorer: Scorer, tg: TaskGroup) -> None:
            try:
                results[index] = await scorer.score(request)
            except Exception as exc:
                exc.add_note(f"raised by {_name(scorer, index)}")
                errors.append(exc)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for index, scorer in enumerate(self.scorers):
                tg.start_soon(run, index, scorer, tg)
        if errors:
            raise errors[0]
        product = [[1.0] * len(steps) for steps in request.solutions]
        for index, scorer in enumerate(self.scorers):
            scores = _checked(_name(scorer, index), request, results[index])
            for path, path_scores in zip(product, scores, strict=True):
                for k, value in enumerate(path_scores):
                    path[k] *= value
        return product

    async def aclose(self) -> None:
        """Close every inner scorer that has an async ``aclose()``; all are tried, and the first
        failure is raised after the rest are closed."""
        failures: list[Exception] = []
        for scorer in self.scorers:
            try:
                await aclose(scorer)
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]


def _name(scorer: Scorer, index: int) -> str:
    return f"{type(scorer).__name__} (scorer {index} of ProductScorer)"


def _checked(name: str, request: ScoreRequest, scores: object) -> list[list[float]]:
    """``scores`` as floats if it has one list per solution and one finite number per step.

    Raises:
        ScoringError: It does not; the message names the scorer.
    """
    solutions = request.solutions
    if not isinstance(scores, Sequence) or isinstance(scores, str):
        raise ScoringError(f"{name} returned {type(scores).__name__}, not a list of score lists")
    if len(scores) != len(solutions):
        raise ScoringError(
            f"{name} returned {len(scores)} score lists for {len(solutions)} solutions"
        )
    for i, (steps, path_scores) in enumerate(zip(solutions, scores, strict=True)):
        if not isinstance(path_scores, Sequence) or isinstance(path_scores, str):
            raise ScoringError(f"{name} returned {path_scores!r} for solution {i}, not a list")
        if len(path_scores) != len(steps):
            raise ScoringError(
                f"{name} returned {len(path_scores)} scores for solution {i}, "
                f"which has {len(steps)} steps"
            )
        for value in path_scores:
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ScoringError(f"{name} returned a non-finite score: {list(path_scores)!r}")
    return [[float(value) for value in path_scores] for path_scores in scores]


def with_check(scorer: Scorer, check: Check | str) -> Scorer:
    """``scorer`` multiplied by the tool check ``check`` names (``"none"``: ``scorer`` itself).

    The check is a veto: ``arithmetic`` multiplies by ``ArithmeticScorer(unchecked=1.0)``, so a
    step with a false claim (or a path after one) scores 0 and every other step keeps the
    scorer's own score; the scale of the scores, and so what ``balance_temperature`` means, is
    unchanged. ``grounded`` also multiplies by :class:`~rebase_agent.grounding.GroundingScorer`:
    a step that uses a number the problem never gave (or one an earlier step already used)
    keeps a fifth of its score, as does the rest of its path, and a final answer is weighed by
    the share of the problem's numbers its path used.

    Raises:
        ValueError: ``check`` is not one of :data:`CHECKS`, named.
    """
    if check == "none":
        return scorer
    if check == "arithmetic":
        return ProductScorer(scorer, ArithmeticScorer(unchecked=1.0))
    if check == "grounded":
        return ProductScorer(scorer, ArithmeticScorer(unchecked=1.0), GroundingScorer())
    raise ValueError(f"check must be one of {', '.join(CHECKS)}, got {check!r}")


def describe(scorer: Scorer) -> str:
    """A short human name of ``scorer``: its ``description`` attribute where it has one, the
    factors of a :class:`ProductScorer` joined by ``×``, else its class name."""
    if isinstance(scorer, ProductScorer):
        return " × ".join(describe(inner) for inner in scorer.scorers)
    if isinstance(scorer, ArithmeticScorer):
        return "arithmetic check"
    description = getattr(scorer, "description", None)
    return description if isinstance(description, str) else type(scorer).__name__
