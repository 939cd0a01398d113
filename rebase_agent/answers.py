"""Final-answer extraction and normalisation.

:func:`extract_answer` finds the answer a solution commits to, in this order of preference:
the last ``\\boxed{...}`` (balanced braces), the last ``The answer is ...`` (also "final answer
is", with or without a colon), GSM8K's ``#### ...``. It takes the answer itself, not the rest of
its sentence: ``The answer is 7, we must add 5 and 6.`` gives ``7``, ``The answer is 3.5 meters.``
gives ``3.5``, ``The answer is 60 / 3 = 20.`` gives ``20`` (an equation such as ``2x + 3 = 7``
stays whole). Text with none of them has no answer, and a solution with no answer never wins a
vote. Tasks that are not math pass their own extractor, a ``Callable[[str], str | None]``, to
the search.

:func:`final_answer` decides whether a step *ends* a solution: it holds a ``\\boxed{}``, or its
last sentence is an answer statement (``The answer is X``, the released REBASE code's rule, at
the end of the step; ``So the answer is X``; ``#### X``). "First we check whether the answer is
positive" is reasoning, not an answer, and ends nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

__all__ = (
    "AnswerExtractor",
    "extract_answer",
    "extract_boxed",
    "final_answer",
    "normalize_answer",
)

AnswerExtractor = Callable[[str], str | None]
"""Takes a solution's text, returns its final answer or ``None``."""

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "The answer is" counts only where it starts a clause: at the start of a line or after a
# sentence's end (or a step tag), or after "so", "thus", "therefore", "hence". "We check whether
# the answer is positive" states no answer.
_CONNECTIVE = r"(?:so|thus|therefore|hence|finally)\s*,?\s+"
_ANSWER_IS = re.compile(
    r"(?:(?:^|[.!?:;]|ки)[ \t]*(?:\*\*[ \t]*)?(?:" + _CONNECTIVE + r")?|\b" + _CONNECTIVE + r")"
    r"(?:the\s+)?(?:final\s+)?answer\s+is\b[ \t]*:?[ \t]*(?P<ans>[^\n]*)",
    re.IGNORECASE | re.MULTILINE,
)
_GSM8K = re.compile(r"####[ \t]*(?P<ans>[^\n]+)")
# Math-Shepherd step tags and trailing punctuation that are never part of an answer.
_TRAILING = re.compile(r"(?:\s|ки|\.|,|;|!|\$|\*)+$")
_LEADING = re.compile(r"^(?:\s|\$|\*)+")
_INLINE_MATH = re.compile(r"\s*\$([^$]+)\$")
_SENTENCE_END = re.compile(r"\.\s")
# Where the answer's own words stop: a clause that goes on ("7, we must add 5 and 6").
_CLAUSE_BREAK = re.compile(
    r",\s|;|\s+(?:because|since|which|so|as|if|when|but|and\s+then|then)\b", re.IGNORECASE
)
# A number followed only by words is the number ("3.5 meters", "18 dollars").
_NUMBER_THEN_WORDS = re.compile(
    r"^(?P<num>[-+]?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?%?)\s+[A-Za-z][A-Za-z\s.'-]*$"
)
# Arithmetic worked out in the answer itself ("50,000 - 150 = 49850"): the answer is its value.
_ARITHMETIC_SIDE = re.compile(r"^[-+]?[\d$(][\d\s.,$%()+\-*/×÷]*$")
_VALUE_SIDE = re.compile(r"^[-+]?\$?\d[\d,]*(?:\.\d+)?%?(?:\s+[A-Za-z][A-Za-z\s.'-]*)?$")


def _worked_value(answer: str) -> str | None:
    """The value of ``expr = value`` (or ``a = b = value``) when every side but the last is
    arithmetic on numbers alone, so an equation answer (``2x + 3 = 7``) stays whole."""
    *sides, value = (side.strip() for side in answer.split("="))
    if not sides or not _VALUE_SIDE.match(value):
        return None
    if all(_ARITHMETIC_SIDE.match(side.replace(" x ", " * ")) for side in sides):
        return value
    return None


# Sentences allowed after a final answer (the Minerva/MATH format's sign-off).
_SIGN_OFF = re.compile(r"^I hope it is correct\.?$", re.IGNORECASE)
_SENTENCES = re.compile(r"(?<=[.!?])\s+")


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


def _cut_at(text: str, pattern: re.Pattern[str]) -> str:
    """``text`` up to the first match of ``pattern`` outside brackets (a tuple
    ``\\left(3, \\frac{\\pi}{2}\\right)`` is one answer)."""
    for match in pattern.finditer(text):
        head = text[: match.start()]
        opened = sum(head.count(c) for c in "([{")
        closed = sum(head.count(c) for c in ")]}")
        if opened <= closed:
            return head
    return text


def _clean(raw: str) -> str | None:
    """The answer in the text after "The answer is": a box, an inline ``$...$``, or the number
    or expression up to the end of its clause."""
    boxed = extract_boxed(raw)
    if boxed is not None:
        return boxed or None
    inline = _INLINE_MATH.match(raw)
    if inline:
        return inline.group(1).strip() or None
    clause = _cut_at(_cut_at(raw, _SENTENCE_END), _CLAUSE_BREAK)
    answer = _LEADING.sub("", _TRAILING.sub("", clause))
    answer = _worked_value(answer) or answer
    number = _NUMBER_THEN_WORDS.match(answer)
    if number:
        answer = number.group("num")
    return answer or None


def extract_answer(text: str) -> str | None:
    """Return the final answer stated in ``text``, or ``None`` when it states none.

    >>> extract_answer("so x = 4. The answer is: 4 ки")
    '4'
    >>> extract_answer("The answer is 7, we must add 5 and 6.")
    '7'
    >>> extract_answer("The answer is 50,000 - 150 = 49850.")
    '49850'
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


def final_answer(step: str, delimiters: tuple[str, ...] = ()) -> str | None:
    """The answer ``step`` ends its solution with, or ``None`` when the step does not end it.

    A step ends a solution when it holds a ``\\boxed{...}``, or when its last sentence states
    the answer (``The answer is X``, ``So the answer is X``, ``#### X``), with at most a
    trailing delimiter, step tag, or "I hope it is correct." after it. An answer phrase inside
    reasoning ("we check whether the answer is positive") or followed by more reasoning ("The
    answer is 5 if x > 0. Otherwise ...") is not a final answer.

    Args:
        step: One step's text, as the provider returned it.
        delimiters: Step delimiters that may end the step (removed before looking).

    >>> final_answer("Step 3: 4 + 5 = 9. The answer is: 9 ки\\n")
    '9'
    >>> final_answer("First we check whether the answer is positive.\\n\\n") is None
    True
    """
    boxed = extract_boxed(step)
    if boxed:
        return boxed
    text = step
    for delimiter in delimiters:
        if delimiter.strip() and text.rstrip().endswith(delimiter.strip()):
            text = text.rstrip()[: -len(delimiter.strip())]
    text = text.rstrip()
    for pattern in (_ANSWER_IS, _GSM8K):
        matches = list(pattern.finditer(text))
        if not matches:
            continue
        last = matches[-1]
        if text[last.end() :].strip():
            return None  # more lines follow the answer statement
        sentences = _SENTENCES.split(last.group("ans").strip())
        if not all(_SIGN_OFF.match(s) for s in sentences[1:]):
            return None  # the statement is not the step's last sentence
        return _clean(last.group("ans"))
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
