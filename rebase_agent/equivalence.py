"""Which answers say the same thing: classes of equivalent answers, for voting.

Answers are first grouped by :func:`~rebase_agent.answers.normalize_answer`. Plain numbers are
then final (their normal form is canonical). Other forms (LaTeX fractions, expressions, sets)
are compared with math-verify, which parses them with SymPy and never evaluates arbitrary code.

math-verify bounds each comparison with ``signal.alarm``, which only works in a main thread, and
SymPy can run for a long time on adversarial input. So the comparisons run in a worker process
(``anyio.to_process``), in its main thread. The time limit covers the comparisons themselves: the
worker starts its clock once math-verify is imported, gives each parse and comparison what is
left of it (math-verify's own per-call limit), and stops comparing when it is spent; the answers
not compared by then keep their normalised-string classes, with a warning in the log. Waiting
for a free worker, starting one and importing math-verify are not timed (under load, equivalent
answers still merge); only a worker that never answers is killed, after the limit plus a
generous allowance for starting it (:data:`WORKER_START_ALLOWANCE_S`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio
import anyio.to_process
from anyio.lowlevel import RunVar

from rebase_agent.answers import normalize_answer
from rebase_agent.config import AnswerEquivalence

__all__ = ("WORKER_START_ALLOWANCE_S", "group_answers", "run_in_worker")

logger = logging.getLogger(__name__)

_PLAIN_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


async def group_answers(
    answers: Sequence[str],
    *,
    method: AnswerEquivalence = "math_verify",
    timeout_s: float = 5.0,
) -> list[int]:
    """Label each answer with the index of its class; equal labels mean equivalent answers.

    Classes are numbered in order of first appearance, so ``labels[i] <= i``.

    Args:
        answers: Extracted answers.
        method: ``"math_verify"`` or ``"normalized"`` (string comparison after normalisation).
        timeout_s: Time limit for all math-verify comparisons of this call.
    """
    normal = [normalize_answer(a) for a in answers]
    first_of: dict[str, int] = {}
    labels = [first_of.setdefault(n, i) for i, n in enumerate(normal)]
    representatives = sorted(set(labels))
    if method == "normalized" or len(representatives) < 2:
        return _renumber(labels)
    if all(_PLAIN_NUMBER.match(normal[i]) for i in representatives):
        return _renumber(labels)
    try:
        rep_labels, complete = await run_in_worker(
            _math_verify_classes, [answers[i] for i in representatives], limit_s=timeout_s
        )
    except TimeoutError:
        logger.warning(
            "the math-verify worker did not answer within %.1f s (plus %.0f s to start); "
            "voting on normalised strings",
            timeout_s,
            WORKER_START_ALLOWANCE_S,
        )
        return _renumber(labels)
    except Exception as exc:  # a crash in the parser must not lose a finished search
        logger.warning("math-verify failed (%r); voting on normalised strings", exc)
        return _renumber(labels)
    if not complete:
        logger.warning(
            "math-verify comparisons took over %.1f s for %d answers; the rest vote on "
            "normalised strings",
            timeout_s,
            len(representatives),
        )
    merged = {
        rep: representatives[label] for rep, label in zip(representatives, rep_labels, strict=True)
    }
    return _renumber([merged[label] for label in labels])


def _renumber(labels: list[int]) -> list[int]:
    """Map arbitrary class ids to 0, 1, 2, ... in order of first appearance."""
    ids: dict[int, int] = {}
    return [ids.setdefault(label, len(ids)) for label in labels]


WORKER_START_ALLOWANCE_S = 120.0
"""Seconds a math-verify worker may take to start and import, beyond the comparison limit,
before it is taken for hung and killed. Not part of the comparison time limit."""

_T = TypeVar("_T")
_worker_slots: RunVar[anyio.CapacityLimiter] = RunVar("rebase_agent_math_verify_slots")


def _slots() -> anyio.CapacityLimiter:
    """Worker processes in use at once for math-verify (one per CPU), per event loop."""
    try:
        return _worker_slots.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(os.cpu_count() or 1)
        _worker_slots.set(limiter)
        return limiter


async def run_in_worker(function: Callable[..., _T], *args: Any, limit_s: float) -> _T:
    """Run ``function(*args, limit_s)`` in a worker process and return what it returns.

    ``function`` enforces ``limit_s`` on its own work (see :class:`_Clock`). Waiting here for
    a free worker is not timed; once a worker is ours, it gets ``limit_s`` plus
    :data:`WORKER_START_ALLOWANCE_S` before it is killed and :class:`TimeoutError` raised.
    """
    slots = _slots()
    async with slots:
        with anyio.fail_after(limit_s + WORKER_START_ALLOWANCE_S):
            call: tuple[Any, ...] = (*args, limit_s)
            return await anyio.to_process.run_sync(
                function,
                *call,
                cancellable=True,
                limiter=anyio.CapacityLimiter(1),
            )


_warm = False


def _warm_up() -> None:
    """In a worker, once: import math-verify and run one comparison, so its lazy imports and
    grammar loading (seconds on a busy machine) are part of starting the worker."""
    global _warm
    if _warm:
        return
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    one = parse("$\\frac{1}{2}$", extraction_config=configs)
    verify(one, parse("$0.5$", extraction_config=configs))
    _warm = True


class _Clock:
    """In a worker: the comparison time left, started once math-verify is warm."""

    def __init__(self, limit_s: float) -> None:
        _warm_up()
        self.deadline = time.monotonic() + limit_s

    def left(self) -> int:
        """Whole seconds left for the next call (math-verify's timeouts are whole seconds);
        0 when the time is spent."""
        remaining = self.deadline - time.monotonic()
        return max(1, math.ceil(remaining)) if remaining > 0 else 0


def _math_verify_classes(answers: list[str], limit_s: float) -> tuple[list[int], bool]:
    """Runs in a worker process: classes of ``answers`` by math-verify equivalence, and whether
    every comparison was made within ``limit_s`` (answers not reached keep their own class)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    clock = _Clock(limit_s)
    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    parsed: list[list[object]] = []
    complete = True
    for answer in answers:
        left = clock.left()
        if not left:
            complete = False
            parsed.append([])
            continue
        text = answer if "$" in answer else f"${answer}$"
        try:
            parsed.append(list(parse(text, extraction_config=configs, parsing_timeout=left)))
        except Exception:
            parsed.append([])
    labels: list[int] = []
    for i, target in enumerate(parsed):
        label = i
        if target:
            for j in range(i):
                if labels[j] != j or not parsed[j]:
                    continue
                left = clock.left()
                if not left:
                    complete = False
                    break
                if _equal(parsed[j], target, left, verify):
                    label = j
                    break
        labels.append(label)
    return labels, complete


def _equal(gold: list[object], target: list[object], timeout: int, verify: object) -> bool:
    try:
        return bool(verify(gold, target, timeout_seconds=timeout))  # type: ignore[operator]
    except Exception:
        return False
