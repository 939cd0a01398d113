"""Grading final answers against gold answers: math-verify behind a time limit, never ``eval``.

An answer that normalises to the gold's string (see :func:`~rebase_agent.normalize_answer`) is
right without parsing; two plain numbers that differ are wrong without parsing. Everything else
(LaTeX fractions, intervals, expressions) goes to math-verify, which parses with SymPy.

math-verify bounds its own work with ``signal.alarm``, which only works in a main thread, so as
in :mod:`rebase_agent.equivalence` the comparisons run in a worker process
(``anyio.to_process``, ``cancellable=True``), each under math-verify's own per-comparison
timeout, and the whole batch under ``anyio.fail_after``. Past the limit the worker is killed and
the answers not yet decided are graded wrong with method ``"timeout"``, so a grade is always an
auditable record: the extracted answer, the gold, the verdict and how it was reached.

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

import anyio
import anyio.to_process
from pydantic import BaseModel

from rebase_agent.answers import normalize_answer

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
        timeout_s: Time limit of one math-verify comparison; the batch gets
            ``timeout_s`` times the number of comparisons.
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
                grades[i] = Grade(answer=answer, gold=gold, correct=verdict, method=method)
    return [g for g in grades if g is not None]


async def grade_answer(answer: str | None, gold: str, *, timeout_s: float = 5.0) -> Grade:
    """Grade one answer; see :func:`grade_answers`."""
    return (await grade_answers([answer], gold, timeout_s=timeout_s))[0]


async def _verify(
    answers: list[str], gold: str, timeout_s: float
) -> tuple[list[bool], GradeMethod]:
    per_comparison = max(1, math.ceil(timeout_s))
    try:
        with anyio.fail_after(timeout_s * (len(answers) + 1)):
            verdicts = await anyio.to_process.run_sync(
                _verify_in_worker, gold, answers, per_comparison, cancellable=True
            )
    except TimeoutError:
        logger.warning("math-verify ran past %.1f s grading %d answers", timeout_s, len(answers))
        return [False] * len(answers), "timeout"
    except Exception as exc:  # a crash in the parser must not stop an evaluation
        logger.warning("math-verify failed (%r); graded wrong", exc)
        return [False] * len(answers), "error"
    return verdicts, "math_verify"


def _as_latex(text: str) -> str:
    return text if "$" in text or "\\boxed" in text else f"${text}$"


def _verify_in_worker(gold: str, answers: list[str], timeout: int) -> list[bool]:
    """Runs in a worker process's main thread: is each answer equivalent to ``gold``?"""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]

    def parsed(text: str) -> list[object]:
        try:
            return list(parse(_as_latex(text), extraction_config=configs, parsing_timeout=timeout))
        except Exception:
            return []

    gold_parsed = parsed(gold)
    out: list[bool] = []
    for answer in answers:
        target = parsed(answer)
        try:
            ok = bool(
                gold_parsed and target and verify(gold_parsed, target, timeout_seconds=timeout)
            )
        except Exception:
            ok = False
        out.append(ok)
    return out
