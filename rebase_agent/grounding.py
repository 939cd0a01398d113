"""Whether a path's arithmetic works on the problem's numbers: a check for word problems.

The arithmetic check (:class:`~rebase_agent.ArithmeticScorer`) cannot tell a wrong step whose
arithmetic is right: asked how old Anna's mother is when Anna is 7 and her mother 4 times as old,
a small model writes ``6 * 4 = 24``, which is true, about a 6 that the problem never mentions.
:class:`GroundingScorer` reads the operands of every claim a step makes (the numbers on the left
of its ``=``) and calls the step *grounded* when each one is a number of the problem (digits or
number words: ``three``, ``twice``, ``half``, ``a dozen``), the result of an earlier claim of the
same path, 0 or 1, or a constant of a unit the problem names (60 for ``hours``, 100 for ``%``),
and when it uses no number of the problem a second time (``6 * 4 = 24``, then ``24 + 6 = 30``:
the problem's 6 counted twice). Once a step uses a number from nowhere or again, that step and
the rest of its path score ``ungrounded``.

A step that states the final answer is also scored by *coverage*: the share of the numbers the
problem writes in digits that the path's claims used. A word problem seldom gives a number it
does not need, so a path that ignored one of them usually solved a different problem; the final
step's score is multiplied by ``coverage ** coverage_power``. Problems that are one expression
(``What is 6 * 7?``) are left to the arithmetic check, which compares the answer with it.

Like the arithmetic check it is pure Python on exact rationals, never ``eval``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from fractions import Fraction

import anyio.lowlevel

from rebase_agent.answers import extract_answer
from rebase_agent.claims import Claim, step_claims
from rebase_agent.protocols import ScoreRequest
from rebase_agent.rewards import finite_score

__all__ = ("CONSTANTS", "UNIT_CONSTANTS", "GroundingScorer", "problem_numbers")

CONSTANTS: frozenset[Fraction] = frozenset({Fraction(0), Fraction(1)})
"""Numbers any step may use without the problem giving them."""

UNIT_CONSTANTS: dict[str, tuple[int, ...]] = {
    "%": (100,), "percent": (100,), "hour": (60, 24), "minute": (60,), "second": (60,),
    "day": (24, 7, 30, 365), "week": (7, 52), "month": (30, 12), "year": (12, 52, 365),
    "dozen": (12,), "cent": (100,), "meter": (100, 1000), "kilometer": (1000,),
    "kilogram": (1000,), "gram": (1000,), "liter": (1000,), "foot": (12,), "feet": (12,),
    "inch": (12,), "yard": (3,), "pound": (16,), "ounce": (16,),
}  # fmt: skip
"""Numbers a step may use when the problem names the unit (``hours``: 60 and 24)."""

_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
    "ninety": 90, "hundred": 100, "thousand": 1000, "twice": 2, "double": 2, "doubled": 2,
    "triple": 3, "tripled": 3, "thrice": 3, "half": 2, "halves": 2, "third": 3, "thirds": 3,
    "quarter": 4, "quarters": 4, "dozen": 12, "dozens": 12, "pair": 2, "pairs": 2,
}  # fmt: skip
_WORD = re.compile(r"[A-Za-z]+")
_DIGITS = re.compile(r"\d+(?:\.\d+)?")
_EQUALS = re.compile(r"=|≈")


def problem_numbers(problem: str, *, words: bool = True) -> frozenset[Fraction]:
    """The numbers ``problem`` gives: digits (``1,200``, ``3.5``; a percentage as written) and,
    with ``words``, number words (``three``, ``twice`` = 2, ``half`` = 2, ``a dozen`` = 12)."""
    text = problem.replace(",", "")
    found = {Fraction(m) for m in _DIGITS.findall(text)}
    if words:
        found |= {Fraction(_WORDS[w]) for w in map(str.lower, _WORD.findall(text)) if w in _WORDS}
    return frozenset(found)


def _operands(claim: Claim) -> list[Fraction]:
    """The numbers written on the left of ``claim``'s ``=``."""
    left = _EQUALS.split(claim.text, maxsplit=1)[0]
    return [Fraction(m) for m in _DIGITS.findall(left.replace(",", ""))]


def _is_expression(problem: str) -> bool:
    """Whether the problem is one expression to evaluate (``What is 6 * 7?``): two or more
    numbers and no more than a few words besides."""
    words = [w for w in _WORD.findall(problem) if w.lower() not in _WORDS]
    return len(words) <= 4 and len(_DIGITS.findall(problem)) >= 2


class GroundingScorer:
    """A process reward for word problems: a step is right only about the problem's numbers.

    See the module documentation for what *grounded* and *coverage* mean.

    Args:
        grounded: Score of a step whose operands are all known (a step with no claim too).
        ungrounded: Score of a step that uses a number from nowhere, and of every later step of
            its path.
        coverage_power: How strongly a final answer is weighed by the share of the problem's
            numbers its path used (0: not at all).

    Raises:
        ValueError: A score is not a finite number, or ``coverage_power`` is negative.
    """

    description = "grounding check"

    def __init__(
        self, *, grounded: float = 1.0, ungrounded: float = 0.2, coverage_power: float = 2.0
    ) -> None:
        self.grounded = finite_score("GroundingScorer", "grounded", grounded)
        self.ungrounded = finite_score("GroundingScorer", "ungrounded", ungrounded)
        if not math.isfinite(coverage_power) or coverage_power < 0:
            raise ValueError(
                f"GroundingScorer coverage_power must be a number >= 0, got {coverage_power!r}"
            )
        self.coverage_power = float(coverage_power)

    def __repr__(self) -> str:
        return (
            f"GroundingScorer(grounded={self.grounded}, ungrounded={self.ungrounded}, "
            f"coverage_power={self.coverage_power})"
        )

    async def score(self, request: ScoreRequest) -> list[list[float]]:
        """One score per step of each solution."""
        await anyio.lowlevel.checkpoint()
        return [self.path_scores(steps, request.problem) for steps in request.solutions]

    def path_scores(self, steps: Sequence[str], problem: str) -> list[float]:
        """The scores of one path's steps, root side first."""
        given = problem_numbers(problem, words=False)
        expression = _is_expression(problem)
        known = set(problem_numbers(problem)) | CONSTANTS | _unit_constants(problem)
        used: set[Fraction] = set()
        scores: list[float] = []
        lost = False
        results: set[Fraction] = set()
        for step in steps:
            claims = step_claims(step)
            operands = [v for claim in claims for v in _operands(claim)]
            if not expression and any(v not in known for v in operands):
                lost = True
            reused = [v for v in operands if v in used and v not in results]
            if not expression and reused:
                lost = True
            used.update(v for v in operands if v in given)
            results.update(claim.right for claim in claims)
            known.update(v for claim in claims for v in (claim.left, claim.right))
            score = self.ungrounded if lost else self.grounded
            if not expression and given and extract_answer(step) is not None:
                score *= _coverage(given, used) ** self.coverage_power
            scores.append(score)
        return scores


def _unit_constants(problem: str) -> set[Fraction]:
    lowered = problem.lower()
    words = {w.rstrip("s") for w in _WORD.findall(lowered)} | ({"%"} if "%" in lowered else set())
    return {Fraction(v) for unit, values in UNIT_CONSTANTS.items() if unit in words for v in values}


def _coverage(given: frozenset[Fraction], used: set[Fraction]) -> float:
    return len(given & used) / len(given)
