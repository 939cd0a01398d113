"""Final-answer extraction and normalisation.

:func:`extract_answer` finds the answer a solution commits to, in this order of preference:
the last ``\\boxed{...}`` (balanced braces), the last ``The answer is ...`` (also "final answer
is", with or without a colon), GSM8K's ``#### ...``. Text with none of them has no answer, and a
solution with no answer never wins a vote. Tasks that are not math pass their own extractor, a
``Callable[[str], str | None]``, to the search.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

__all__ = ("AnswerExtractor", "extract_answer", "extract_boxed", "normalize_answer")

AnswerExtractor = Callable[[str], str | None]
"""Takes a solution's text, returns its final answer or ``None``."""

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS = re.compile(
    r"(?:the\s+)?(?:final\s+)?answer\s+is\s*:?\s*(?P<ans>[^\n]+)", re.IGNORECASE
)
_GSM8K = re.compile(r"####\s*(?P<ans>[^\n]+)")
# Math-Shepherd step tags and trailing punctuation that are never part of an answer.
_TRAILING = re.compile(r"(?:\s|ки|\.|,|;|!|\$)+$")
_LEADING = re.compile(r"^(?:\s|\$)+")
_INLINE_MATH = re.compile(r"\s*\$([^$]+)\$")
_SENTENCE_END = re.compile(r"\.\s")


def extract_boxed(text: str) -> str | None:
    """Return the content of the last ``\\boxed{...}`` in ``text``, braces balanced."""
    result = None
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    result = text[start:i].strip()
                    break
    return result


def _clean(raw: str) -> str | None:
    """The answer in the text after "The answer is": a box, an inline ``$...$``, or the
    sentence up to its full stop."""
    boxed = extract_boxed(raw)
    if boxed is not None:
        return boxed or None
    inline = _INLINE_MATH.match(raw)
    if inline:
        return inline.group(1).strip() or None
    sentence = _SENTENCE_END.split(raw, maxsplit=1)[0]
    answer = _LEADING.sub("", _TRAILING.sub("", sentence))
    return answer or None


def extract_answer(text: str) -> str | None:
    """Return the final answer stated in ``text``, or ``None`` when it states none.

    >>> extract_answer("so x = 4. The answer is: 4 ки")
    '4'
    >>> extract_answer(r"Hence $\\boxed{\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    """
    boxed = extract_boxed(text)
    if boxed:
        return boxed
    for pattern in (_ANSWER_IS, _GSM8K):
        matches = list(pattern.finditer(text))
        if matches:
            answer = _clean(matches[-1].group("ans"))
            if answer is not None:
                return answer
    return None


_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_SPACING = re.compile(r"\\[,;!: ]|\\quad|\\qquad|~")
_NUMBER = re.compile(r"^[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?$")


def normalize_answer(answer: str) -> str:
    """A canonical string for an answer, for comparing answers without parsing them as math.

    Strips ``$``, spacing commands, ``\\text{}`` wrappers, a trailing period and a leading
    ``x =``; removes thousands separators; writes numbers in one form (``"5.0"`` → ``"5"``);
    lower-cases the rest.
    """
    s = answer.strip()
    s = _TEXT_WRAPPER.sub(r"\1", s)
    s = _SPACING.sub("", s)
    s = s.replace("$", "").replace("\\left", "").replace("\\right", "")
    s = re.sub(r"^[a-zA-Z]\s*=\s*", "", s)
    s = s.strip().rstrip(".").strip()
    if _NUMBER.match(s) and any(c.isdigit() for c in s):
        try:
            value = Decimal(s.replace(",", ""))
        except InvalidOperation:
            pass
        else:
            return format(value.normalize(), "f")
    return re.sub(r"\s+", " ", s).lower()
