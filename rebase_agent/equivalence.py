"""Which answers say the same thing: classes of equivalent answers, for voting.

Answers are first grouped by :func:`~rebase_agent.answers.normalize_answer`. Plain numbers are
then final (their normal form is canonical). Other forms (LaTeX fractions, expressions, sets)
are compared with math-verify, which parses them with SymPy and never evaluates arbitrary code.

math-verify bounds each comparison with ``signal.alarm``, which only works in a main thread, and
SymPy can run for a long time on adversarial input. So the comparisons run in a worker process
(``anyio.to_process``), in its main thread, under a time limit for the whole batch; past the
limit the worker is killed and the normalised-string classes stand, with a warning in the log.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence

import anyio
import anyio.to_process

from rebase_agent.answers import normalize_answer
from rebase_agent.config import AnswerEquivalence

__all__ = ("group_answers",)

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
        with anyio.fail_after(timeout_s):
            rep_labels = await anyio.to_process.run_sync(
                _math_verify_classes,
                [answers[i] for i in representatives],
                max(1, math.ceil(timeout_s)),
                cancellable=True,
            )
    except TimeoutError:
        logger.warning(
            "math-verify took over %.1f s comparing %d answers; voting on normalised strings",
            timeout_s,
            len(representatives),
        )
        return _renumber(labels)
    except Exception as exc:  # a crash in the parser must not lose a finished search
        logger.warning("math-verify failed (%r); voting on normalised strings", exc)
        return _renumber(labels)
    merged = {
        rep: representatives[label] for rep, label in zip(representatives, rep_labels, strict=True)
    }
    return _renumber([merged[label] for label in labels])


def _renumber(labels: list[int]) -> list[int]:
    """Map arbitrary class ids to 0, 1, 2, ... in order of first appearance."""
    ids: dict[int, int] = {}
    return [ids.setdefault(label, len(ids)) for label in labels]


def _math_verify_classes(answers: list[str], per_comparison_timeout: int) -> list[int]:
    """Runs in a worker process: classes of ``answers`` by math-verify equivalence."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    parsed = []
    for answer in answers:
        text = answer if "$" in answer else f"${answer}$"
        try:
            parsed.append(
                parse(text, extraction_config=configs, parsing_timeout=per_comparison_timeout)
            )
        except Exception:
            parsed.append([])
    labels: list[int] = []
    for i, target in enumerate(parsed):
        label = i
        if target:
            for j in range(i):
                if (
                    labels[j] == j
                    and parsed[j]
                    and _equal(parsed[j], target, per_comparison_timeout, verify)
                ):
                    label = j
                    break
        labels.append(label)
    return labels


def _equal(gold: list[object], target: list[object], timeout: int, verify: object) -> bool:
    try:
        return bool(verify(gold, target, timeout_seconds=timeout))  # type: ignore[operator]
    except Exception:
        return False
