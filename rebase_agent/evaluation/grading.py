"""Grading final answers against gold answers: math-verify behind a time limit, never ``eval``.

An answer that normalises to the gold's string (see :func:`~rebase_agent.normalize_answer`) is
right without parsing; two plain numbers that differ are wrong without parsing. Everything else
(LaTeX fractions, intervals, expressions) goes to math-verify, which parses with SymPy.

math-verify bounds its own work with ``signal.alarm``, which only works in a main thread, so as
in :mod:`rebase_agent.equivalence` the comparisons run in a worker process
(:func:`~rebase_agent.equivalence.run_in_worker`). The time limit covers the comparisons
themselves, never the wait for a worker or its start: each answer gets ``timeout_s`` of
math-verify's time; answers not decided within it (or the batch's total) are graded wrong with
method ``"timeout"``, so a grade is always an auditable record: the extracted answer, the gold,
the verdict and how it was reached.

Example::

    grades = await grade_answers(["\\\\frac{1}{2}", "0.5", None], gold="1/2")
    assert [g.correct for g in grades] == [True, True, False]
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel

from rebase_agent.answers import normalize_answer
from rebase_agent.equivalence import _Clock, run_in_worker

__all__ = ("Grade", "GradeMethod", "grade_answer", "grade_answers")

logger = logging.getLogger(__name__)

GradeMethod = Literal["string", "number", "math_verify", "no_answer", "timeout", "error"]
_PLAIN_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


class Grade(BaseModel):
    """One answer graded against the gold answer."""

    answer: str | None
    """The extracted answer (``None``: the solution stated none)."""
    gold: str
    correct: bool
    method: GradeMethod
    """How the verdict was reached: equal normalised strings, unequal plain numbers,
    math-verify, no answer, or math-verify ran out of time or failed (graded wrong)."""


async def grade_answers(
    answers: Sequence[str | None], gold: str, *, timeout_s: float = 5.0
) -> list[Grade]:
    """Grade every answer against ``gold``.

    Args:
        answers: Extracted answers; ``None`` is always wrong.
        gold: The gold answer (a number or LaTeX, without ``$``).
        timeout_s: Time limit of one math-verify comparison (its parse and verify); the
            batch gets ``timeout_s`` times the number of comparisons plus one (the gold's
            parse). Waiting for and starting a worker are not counted.
    """
    grades: list[Grade | None] = [None] * len(answers)
    gold_norm = normalize_answer(gold)
    pending: dict[str, list[int]] = {}
    for i, answer in enumerate(answers):
        if answer is None or not answer.strip():
            grades[i] = Grade(answer=answer, gold=gold, correct=False, method="no_answer")
            continue
        norm = normalize_answer(answer)
        if norm == gold_norm:
            grades[i] = Grade(answer=answer, gold=gold, correct=True, method="string")
        elif _PLAIN_NUMBER.match(norm) and _PLAIN_NUMBER.match(gold_norm):
            grades[i] = Grade(answer=answer, gold=gold, correct=False, method="number")
        else:
            pending.setdefault(answer, []).append(i)
    if pending:
        distinct = list(pending)
        verdicts, method = await _verify(distinct, gold, timeout_s)
        for answer, verdict in zip(distinct, verdicts, strict=True):
            for i in pending[answer]:
                grades[i] = Grade(
                    answer=answer,
                    gold=gold,
                    correct=bool(verdict),
                    method="timeout" if verdict is None else method,
                )
    return [g for g in grades if g is not None]


async def grade_answer(answer: str | None, gold: str, *, timeout_s: float = 5.0) -> Grade:
    """Grade one answer; see :func:`grade_answers`."""
    return (await grade_answers([answer], gold, timeout_s=timeout_s))[0]


async def _verify(
    answers: list[str], gold: str, timeout_s: float
) -> tuple[list[bool | None], GradeMethod]:
    try:
        verdicts = await run_in_worker(
            _verify_in_worker, gold, answers, limit_s=timeout_s * (len(answers) + 1)
        )
    except TimeoutError:
        logger.warning("the math-verify worker never answered grading %d answers", len(answers))
        return [None] * len(answers), "timeout"
    except Exception as exc:  # a crash in the parser must not stop an evaluation
        logger.warning("math-verify failed (%r); graded wrong", exc)
        return [False] * len(answers), "error"
    if any(v is None for v in verdicts):
        logger.warning("math-verify ran past %.1f s a comparison grading some answers", timeout_s)
    return verdicts, "math_verify"


def _as_latex(text: str) -> str:
    return text if "$" in text or "\\boxed" in text else f"${text}$"


def _verify_in_worker(gold: str, answers: list[str], limit_s: float) -> list[bool | None]:
    """Runs in a worker process's main thread: is each answer equivalent to ``gold``?
    ``None`` where the batch's time (``limit_s``, counted from here) ran out first."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    clock = _Clock(limit_s)
    per_answer = max(1, math.ceil(limit_s / (len(answers) + 1)))
    configs = [LatexExtractionConfig(), ExprExtractionConfig()]

    def parsed(text: str, timeout: int) -> list[object]:
        try:
            return list(parse(_as_latex(text), extraction_config=configs, parsing_timeout=timeout))
        except Exception:
            return []

    gold_parsed = parsed(gold, min(per_answer, clock.left() or 1))
    out: list[bool | None] = []
    for answer in answers:
        left = clock.left()
        if not left:
            out.append(None)
            continue
        timeout = min(per_answer, left)
        target = parsed(answer, timeout)
        try:
            ok = bool(
                gold_parsed and target and verify(gold_parsed, target, timeout_seconds=timeout)
            )
        except Exception:
            ok = False
        out.append(ok)
    return out
