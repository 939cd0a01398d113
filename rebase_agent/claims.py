"""Finding the arithmetic claims of free text and checking them exactly.

:func:`find_claims` reads every equation a reasoning step writes (``6 * 8 = 48``, ``20% of 50 =
10``, ``$\\frac{3}{4} \\times 12 = 9$``, ``1,200 + 300 = 1,500 apples``) and checks each one with
exact rational arithmetic (:class:`fractions.Fraction`), through a hand-written tokenizer and a
recursive-descent parser: never ``eval``, never a computer algebra system.

What is read:

* numbers ``42``, ``-3``, ``0.5``, ``.5``, ``1,200`` and ``12,345,678`` (a comma is a thousands
  separator only when every group after it has exactly three digits; ``3, 4`` is a list and ``3,4``
  is skipped), the vulgar fractions ``½ ¼ ¾ …`` (``1½`` is 3/2), superscript powers ``10²``;
* ``+ - * × x · ÷ / ^ **`` and the unicode minus (``x`` only between two numbers), the words
  ``times``, ``plus``, ``minus``, ``multiplied by`` and ``divided by`` between two numbers,
  parentheses, implicit multiplication ``2(3 + 4)``, unary signs; ``^`` is right-associative
  and binds tighter than a unary minus (``-2^2 = -4``);
* percent: ``20%`` (or ``20 percent``) is 1/5. ``of`` between a percentage or a fraction
  (``a/b`` of integers, ``½``, ``\\frac{a}{b}``) and what follows it multiplies (``20% of 50 = 10``,
  ``3/4 of 12 = 9``); any other ``of`` makes the side unreadable;
* LaTeX: ``\\times \\cdot \\div \\frac{a}{b} \\left( \\right) \\text{…}`` and ``$…$``, ``\\(…\\)``
  delimiters; Markdown ``**bold**``, bullets and list numbers; ``<<6*7=42>>`` calculator
  annotations. Currency signs are ignored, and a word right after a number is its unit
  (``5 apples``, ``4 km/h``, ``3 m²``); units do not take part in the arithmetic.
* chains: ``a = b = c`` is two claims, ``a = b`` and ``b = c``. A ``≈``/``~`` link is approximate
  and never checked; ``<``, ``>``, ``≠``, ``≤``, ``≥`` are not claims.

The rounding rule: when one side of a claim is a bare decimal written with a point (``3.33``,
``-0.5``, ``33.3%``) and is not exactly equal to the other side, the claim still holds when that
decimal is the exact value correctly rounded to the digits shown, i.e. it is within half a unit
of its last digit (ties either way) *and* the exact value needs more digits than were shown.
``10/3 = 3.33``, ``10/3 = 3.3`` and ``2/3 = 0.67`` hold; ``2/3 = 0.66`` and ``6 * 7 = 42.5`` do
not (42 needs no decimals, so ``42.5`` is simply wrong). A decimal followed by an ellipsis
(``1/6 = 0.1666...``) may be truncated as well as rounded: it holds within one unit of its last
digit. Integers are never rounded: ``7/2 = 3`` is false.

When unsure, a claim is skipped rather than called false. Skipped are: sides that are not
arithmetic (a variable: ``x = 5``, ``2x + 3 = 7``; a function: ``\\sqrt{16} + 2 = 6``; a word
operator this reader does not know: ``3 squared = 9``, ``1.5 million = …``); a left side that may
have been cut short by the words before it (``3 times 4 = 12``, ``Step 2 - 9 * 2 = 18``, a sign
or a lone number right after a word) or a right side cut short by what follows it (``= 3 and a
half``, ``= 3 R 2``, ``= 42nd``); a first link between two bare numbers (``1 hour = 60 minutes``);
anything over the limits below. A claim that evaluates false is also skipped, as unsure, when
its numbers carry two or more different units of which one is a measure that converts (``2 * 60
min = 2 hours``, ``3 dozen = 36 eggs``; ``4 rows + 6 = 12 boxes`` is false), when it reads as a
running total (``6 * 7 = 42 + 3 = 45``: the first link), or when the notation is ambiguous
(``6/2(1+2)``, ``-2^2``).

Limits against denial of service (anything over them is skipped, never raised):
:data:`MAX_TEXT_CHARS` characters of text, :data:`MAX_DIGITS` digits in a number,
:data:`MAX_TOKENS` tokens on one side of a claim, :data:`MAX_DEPTH` nested parentheses,
``|exponent| <=`` :data:`MAX_EXPONENT`, and :data:`MAX_BITS` bits in the numerator or the
denominator of any value (so ``9^9^9^9 = 1`` is skipped at once).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache
from typing import Literal

__all__ = (
    "MAX_BITS",
    "MAX_DEPTH",
    "MAX_DIGITS",
    "MAX_EXPONENT",
    "MAX_TEXT_CHARS",
    "MAX_TOKENS",
    "Claim",
    "Verdict",
    "check_text",
    "find_claims",
    "open_value",
    "step_claims",
    "verdict_of",
)

MAX_TEXT_CHARS = 100_000
"""Longer texts are not read at all (no claims)."""
MAX_DIGITS = 30
"""Digits in one number; a longer number makes its claims unreadable."""
MAX_TOKENS = 100
"""Tokens (numbers, operators, parentheses) on one side of a claim."""
MAX_DEPTH = 20
"""Nested parentheses on one side of a claim."""
MAX_EXPONENT = 64
"""Largest absolute value of an integer exponent."""
MAX_BITS = 4096
"""Largest bit length of the numerator or denominator of any value, intermediate ones included."""

Verdict = Literal["verified", "unchecked", "false"]
"""What the claims of a text add up to: all hold, none could be checked, or one is false."""


@dataclass(frozen=True, slots=True)
class Claim:
    """One checked equation: ``left = right``, one link of a chain."""

    text: str
    """The claim as written, from its left side's first character to its right side's last."""
    left: Fraction
    """The exact value of the left side."""
    right: Fraction
    """The exact value of the right side (a rounded decimal as written, e.g. 333/100)."""
    holds: bool
    """Whether the two sides are equal, or equal under the rounding rule."""
    rounded: bool = False
    """Whether it holds only by the rounding rule (``10/3 = 3.33``)."""
    start: int = 0
    """Offset of the claim in the text."""
    end: int = 0
    """Offset just past the claim in the text."""


def find_claims(text: str) -> list[Claim]:
    """Every checkable equation of ``text``, in order, each checked exactly.

    Links that cannot be read with confidence are left out (see the module documentation), so an
    empty list means "nothing to check", not "wrong".
    """
    if len(text) > MAX_TEXT_CHARS:
        return []
    tokens = _classify(_Scanner(text).scan())
    claims: list[Claim] = []
    for start, end in _runs(tokens):
        _run_claims(text, tokens, start, end, claims)
    return claims


def step_claims(text: str) -> tuple[Claim, ...]:
    """:func:`find_claims` as a tuple, remembered for texts of up to 4,096 characters: a search
    re-scores every step of a path at each depth, and the arithmetic and grounding checks read
    the same steps."""
    return _cached_claims(text) if len(text) <= 4096 else tuple(find_claims(text))


@lru_cache(maxsize=4096)
def _cached_claims(text: str) -> tuple[Claim, ...]:
    return tuple(find_claims(text))


def verdict_of(claims: Sequence[Claim]) -> Verdict:
    """``"false"`` if any of ``claims`` is false, ``"verified"`` if there are claims and all
    hold, ``"unchecked"`` if there are none."""
    if any(not claim.holds for claim in claims):
        return "false"
    return "verified" if claims else "unchecked"


def check_text(text: str) -> Verdict:
    """The :func:`verdict_of` the claims of ``text``."""
    return verdict_of(find_claims(text))


# ----------------------------------------------------------------------------------------------
# Tokens

_Kind = Literal[
    "num",  # a number literal
    "op",  # + - * / ^ (canonical in .op)
    "of",  # "of" between a percentage/fraction and a number
    "pct",  # % or "percent"
    "lp",
    "rp",
    "eq",
    "approx",  # ≈ ~ \approx
    "word",
    "punct",  # punctuation that ends an expression cleanly (: ; , . ? ! newline < > ...)
    "close",  # a ")" that closes nothing in its run: punctuation
    "sym",  # anything else: an expression next to it may be cut short
    "ellipsis",
    "star",  # * (multiplication or Markdown, decided later)
    "dstar",  # ** (power or Markdown bold, decided later)
]

_RUN_KINDS = frozenset({"num", "op", "of", "pct", "lp", "rp", "eq", "approx"})
_OPERAND_END = frozenset({"num", "rp", "pct"})


@dataclass(slots=True)
class _Tok:
    kind: _Kind
    text: str
    start: int
    end: int
    space: bool
    """Whitespace (or the start of the text, or a delimiter such as ``$``) comes right before."""
    op: str = ""
    value: Fraction = Fraction(0)
    decimals: int | None = None
    """Digits after the decimal point, for a number written with one."""
    repeating: bool = False
    """A number followed by an ellipsis."""
    vulgar: bool = False
    """A number written with a vulgar fraction character (``½``, ``1½``)."""
    unit: str | None = None


_DIGITS = frozenset("0123456789")
_OPS = {
    "+": "+",
    "\uff0b": "+",  # fullwidth plus
    "-": "-",
    "\u2212": "-",  # minus sign
    "\ufe63": "-",  # small hyphen-minus
    "\uff0d": "-",  # fullwidth hyphen-minus
    "×": "*",
    "✕": "*",
    "\u2a2f": "*",  # vector or cross product
    "·": "*",
    "⋅": "*",
    "∙": "*",
    "÷": "/",
    "\u2215": "/",  # division slash
    "/": "/",
    "^": "^",
}
_APPROX_CHARS = frozenset("≈≃≅~\u223c")  # and the tilde operator
_PUNCT_CHARS = frozenset(".,;:?!\"'[]#“”\u2018\u2019«»•≠≤≥⩽⩾→⇒⟹↦⟶—")  # and curly quotes
_TRANSPARENT = frozenset("$`&€£¥₹")
_SUPERSCRIPTS = {
    "⁰": "0",
    "¹": "1",
    "²": "2",
    "³": "3",
    "⁴": "4",
    "⁵": "5",
    "⁶": "6",
    "⁷": "7",
    "⁸": "8",
    "⁹": "9",
}
_VULGAR = {
    "½": Fraction(1, 2),
    "⅓": Fraction(1, 3),
    "⅔": Fraction(2, 3),
    "¼": Fraction(1, 4),
    "¾": Fraction(3, 4),
    "⅕": Fraction(1, 5),
    "⅖": Fraction(2, 5),
    "⅗": Fraction(3, 5),
    "⅘": Fraction(4, 5),
    "⅙": Fraction(1, 6),
    "⅚": Fraction(5, 6),
    "⅛": Fraction(1, 8),
    "⅜": Fraction(3, 8),
    "⅝": Fraction(5, 8),
    "⅞": Fraction(7, 8),
}
_LATEX_OPS = {"times": "*", "cdot": "*", "ast": "*", "div": "/"}
_LATEX_FRAC = frozenset({"frac", "dfrac", "tfrac", "cfrac"})
_LATEX_GROUPS = frozenset(
    {"text", "textbf", "textit", "textrm", "textsf", "mathrm", "mathbf", "mathit", "mathsf"}
    | {"boxed", "mbox", "emph", "hbox"}
)
_LATEX_SPACES = frozenset({"quad", "qquad"})
_LATEX_TRANSPARENT = frozenset(
    {"left", "right", "big", "Big", "bigl", "bigr", "Bigl", "Bigr", "displaystyle", "textstyle"}
)
_LATEX_APPROX = frozenset({"approx", "sim", "simeq", "thickapprox", "thicksim", "cong"})
_LATEX_PUNCT = frozenset(
    {"neq", "ne", "le", "leq", "leqslant", "ge", "geq", "geqslant", "lt", "gt", "to"}
    | {"rightarrow", "Rightarrow", "longrightarrow", "Longrightarrow", "implies", "iff"}
    | {"mapsto", "therefore", "because"}
)
_LATEX_ELLIPSIS = frozenset({"cdots", "ldots", "dots", "dotsc", "dotsb"})
_LIST_MARKER = re.compile(r"(?:[-*+•]|\d{1,3}[.)]|\(?[A-Za-z]\))[ \t]+")

# Units written right after a digit ("5kg"); any other letters there make the number a term
# with an unknown ("2x", "3n"), an ordinal ("3rd") or a scale ("5k").
_ATTACHED_UNITS = frozenset(
    {"km", "m", "cm", "mm", "kg", "g", "mg", "lb", "lbs", "oz", "ft", "mi", "yd"}
    | {"h", "hr", "hrs", "min", "mins", "s", "sec", "secs", "ms", "ml", "mL", "l", "L"}
    | {"mph", "kph", "kmh", "°", "°C", "°F", "GB", "MB", "KB", "TB", "cal", "kcal"}
    | {"kW", "kWh", "W", "V", "Hz", "kHz", "MHz", "GHz"}
)
# Single letters that are units after a space ("3 h"); other single letters are unknowns.
_SPACED_LETTER_UNITS = frozenset({"m", "s", "h", "g", "l", "L"})
_OPERATOR_WORDS = frozenset(
    {"times", "plus", "minus", "multiplied", "divided", "over", "by", "per", "of", "than"}
    | {"into", "less", "more", "fewer", "squared", "cubed", "power", "root", "sqrt", "square"}
    | {"cube", "log", "ln", "exp", "sin", "cos", "tan", "mod", "modulo", "factorial"}
    | {"percent", "percentage", "pct", "point", "negative", "positive", "half", "halves"}
    | {"twice", "double", "triple", "thrice", "quadruple", "quarter", "quarters", "third"}
    | {"thirds", "fourth", "fourths", "fifth", "fifths", "tenth", "tenths", "product", "sum"}
    | {"difference", "quotient", "remainder", "rem", "exponent", "raised", "out", "with"}
)
_SCALE_WORDS = frozenset(
    {"hundred", "hundreds", "thousand", "thousands", "million", "millions", "billion"}
    | {"billions", "trillion", "trillions", "dozen", "dozens", "lakh", "lakhs", "crore"}
    | {"crores", "k", "bn", "mn", "mil", "grand"}
)
_LABEL_WORDS = frozenset(
    {"step", "steps", "line", "eq", "eqn", "equation", "problem", "question", "part", "case"}
    | {"item", "no", "number", "num", "page", "chapter", "section", "rule", "example"}
    | {"method", "option", "figure", "fig", "table", "version", "stage", "phase", "level"}
    | {"round", "task", "exercise"}
)
_APPROX_WORDS = frozenset(
    {"about", "approximately", "approx", "roughly", "around", "nearly", "almost", "circa"}
    | {"ca", "rounded", "recurring", "repeating", "ish", "or"}
)
_FUNCTION_WORDS = frozenset(
    {"abs", "max", "min", "gcd", "lcm", "floor", "ceil", "ceiling", "mean", "avg", "average"}
    | {"median", "sgn", "sign", "int", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh"}
)
_LEFT_BLOCK = _OPERATOR_WORDS | _SCALE_WORDS | _LABEL_WORDS | _FUNCTION_WORDS
_RIGHT_BLOCK = _OPERATOR_WORDS | _SCALE_WORDS | _APPROX_WORDS | {"to", "x"}
_RESERVED = _LEFT_BLOCK | _RIGHT_BLOCK | {"and"}
# Words that follow a number without being its unit ("= 42 in total", "= 9 so").
_NOT_UNITS = _RESERVED | frozenset(
    {"in", "is", "are", "was", "were", "be", "so", "then", "which", "that", "this", "for", "at"}
    | {"on", "as", "the", "we", "he", "she", "they", "it", "you", "i", "each", "but", "because"}
    | {"since", "if", "when", "hence", "thus", "therefore", "now", "left", "total", "altogether"}
    | {"overall", "remaining", "all", "here", "there", "too", "also", "again", "yes", "no"}
)
_FRACTION_WORDS = frozenset({"a", "an", "one", "half", "quarter", "quarters", "third", "thirds"})
_HARMLESS_LETTERS = frozenset({"a", "A", "I"})
# Punctuation after which a leading sign is a sign, not a binary minus cut off from its left.
_SIGN_OK_PUNCT = frozenset(
    {":", "\n", ";", ",", "[", '"', "“", "\u2018", "'", "#", "<", ">", "<=", ">=", "<<", ">>", ":="}
    | {"!", "?", ".", "=>", "→", "⇒", "\\\\", "≤", "≥", "≠"}
)


_ONE_CHAR_KINDS: dict[str, _Kind] = {
    "%": "pct",
    "(": "lp",
    ")": "rp",
    **dict.fromkeys(_APPROX_CHARS, "approx"),
}
"""Characters that are a token of their own kind, whatever surrounds them."""


class _Scanner:
    """Text to raw tokens, in one pass; LaTeX braces are tracked on a stack."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[_Tok] = []
        self.braces: list[str] = []
        self.space = True
        self.line_start = True

    def scan(self) -> list[_Tok]:
        i = 0
        while i < len(self.text):
            i = self._step(i)
        return self.toks

    def _emit(self, kind: _Kind, start: int, end: int, **fields: object) -> _Tok:
        tok = _Tok(kind, self.text[start:end], start, end, self.space)
        for name, value in fields.items():
            setattr(tok, name, value)
        self.toks.append(tok)
        self.space = False
        self.line_start = False
        return tok

    def _step(self, i: int) -> int:
        text = self.text
        c = text[i]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if c == "\n":
            self._emit("punct", i, i + 1)
            self.space = self.line_start = True
            return i + 1
        if c.isspace():
            self.space = True
            return i + 1
        if self.line_start:
            marker = _LIST_MARKER.match(text, i)
            if marker:
                self.space, self.line_start = True, False
                return marker.end()
        if c in _DIGITS or (c == "." and nxt in _DIGITS and not (i and text[i - 1].isalnum())):
            return self._number(i)
        if c in _VULGAR:
            return self._vulgar(i)
        if c in _SUPERSCRIPTS or c == "⁻":
            return self._superscript(i)
        if c == "-" and nxt == ">":
            self._emit("punct", i, i + 2)
            return i + 2
        if c in _OPS:
            self._emit("op", i, i + 1, op=_OPS[c])
            return i + 1
        if c == "*":
            j = i
            while j < len(text) and text[j] == "*":
                j += 1
            kind: _Kind = "star" if j - i == 1 else "dstar" if j - i == 2 else "punct"
            self._emit(kind, i, j)
            return j
        if c in "=\uff1d":  # and the fullwidth equals sign
            if nxt == ">":
                self._emit("punct", i, i + 2)
                return i + 2
            end = i + 2 if nxt == "=" else i + 1
            self._emit("eq", i, end)
            return end
        if c in "<>!:":
            if nxt == "=" or (c in "<>" and nxt == c):
                self._emit("punct", i, i + 2)
                return i + 2
            if c == "!" and self.toks and self.toks[-1].kind == "num" and not self.space:
                self._emit("sym", i, i + 1)  # a factorial
                return i + 1
            if c == ":" and nxt in _DIGITS and i and text[i - 1] in _DIGITS:
                self._emit("sym", i, i + 1)  # a time or a ratio, 3:30
                return i + 1
            self._emit("punct", i, i + 1)
            return i + 1
        single = _ONE_CHAR_KINDS.get(c)
        if single is not None:
            self._emit(single, i, i + 1)
            return i + 1
        if c == "{":
            self.braces.append("paren")
            self._emit("lp", i, i + 1)
            return i + 1
        if c == "}":
            return self._close_brace(i)
        if c in _TRANSPARENT:
            self.space = True
            return i + 1
        if c == "\\":
            return self._command(i)
        if c == "°" and self.toks and self.toks[-1].kind == "num" and not self.space:
            end = i + 2 if nxt in ("C", "F") else i + 1
            self._emit("word", i, end)
            return end
        if c.isalpha():
            j = i
            while j < len(text) and text[j].isalpha():
                j += 1
            self._emit("word", i, j)
            return j
        if c == "…" or text.startswith("...", i):
            end = i + 1 if c == "…" else i + 3
            self._emit("ellipsis", i, end)
            return end
        self._emit("punct" if c in _PUNCT_CHARS else "sym", i, i + 1)
        return i + 1

    def _number(self, i: int) -> int:
        text, n = self.text, len(self.text)
        j = i
        while j < n and text[j] in _DIGITS:
            j += 1
        whole = text[i:j]
        if 1 <= len(whole) <= 3:
            while (
                j + 4 <= n
                and text[j] == ","
                and all(ch in _DIGITS for ch in text[j + 1 : j + 4])
                and (j + 4 == n or text[j + 4] not in _DIGITS)
            ):
                whole += text[j + 1 : j + 4]
                j += 4
        frac = ""
        if j + 1 < n and text[j] == "." and text[j + 1] in _DIGITS:
            k = j + 1
            while k < n and text[k] in _DIGITS:
                k += 1
            frac = text[j + 1 : k]
            j = k
        if j + 1 < n and text[j] in ".,:" and text[j + 1] in _DIGITS:
            # 1.2.3, 3,4, 1,2345, 12:30: not a number this reader trusts
            while j + 1 < n and text[j] in ".,:" and text[j + 1] in _DIGITS:
                j += 1
                while j < n and text[j] in _DIGITS:
                    j += 1
            self._emit("sym", i, j)
            return j
        if len(whole) + len(frac) > MAX_DIGITS:
            self._emit("sym", i, j)
            return j
        value = Fraction(int(whole + frac), 10 ** len(frac))
        self._emit("num", i, j, value=value, decimals=len(frac) if frac else None)
        return j

    def _vulgar(self, i: int) -> int:
        value = _VULGAR[self.text[i]]
        prev = self.toks[-1] if self.toks else None
        if (
            prev is not None
            and prev.kind == "num"
            and prev.end == i
            and prev.decimals is None
            and not prev.vulgar
        ):
            prev.value += value  # a mixed number, 1½
            prev.vulgar = True
            prev.end = i + 1
            prev.text = self.text[prev.start : i + 1]
            return i + 1
        self._emit("num", i, i + 1, value=value, vulgar=True)
        return i + 1

    def _superscript(self, i: int) -> int:
        text = self.text
        self._emit("op", i, i, op="^")
        j = i
        if text[j] == "⁻":
            self._emit("op", j, j + 1, op="-")
            j += 1
        k = j
        while k < len(text) and text[k] in _SUPERSCRIPTS:
            k += 1
        if k == j or k - j > MAX_DIGITS:
            self._emit("sym", j, max(k, j + 1))
            return max(k, j + 1)
        digits = "".join(_SUPERSCRIPTS[ch] for ch in text[j:k])
        self._emit("num", j, k, value=Fraction(int(digits)))
        return k

    def _skip_spaces(self, j: int) -> int:
        while j < len(self.text) and self.text[j] in " \t":
            j += 1
        return j

    def _close_brace(self, i: int) -> int:
        if not self.braces:
            self._emit("sym", i, i + 1)
            return i + 1
        kind = self.braces.pop()
        if kind == "group":
            return i + 1
        self._emit("rp", i, i + 1)
        if kind == "den":
            self._emit("rp", i, i + 1)  # closes the \frac as a whole
        elif kind == "num":
            j = self._skip_spaces(i + 1)
            if j < len(self.text) and self.text[j] == "{":
                self._emit("op", j, j, op="/")
                self._emit("lp", j, j + 1)
                self.braces.append("den")
                return j + 1
        return i + 1

    def _command(self, i: int) -> int:
        text = self.text
        if i + 1 >= len(text):
            self._emit("sym", i, i + 1)
            return i + 1
        c = text[i + 1]
        if not c.isalpha():
            if c == "\\":
                self._emit("punct", i, i + 2)
            elif c in ",;:! ()[]$":
                self.space = True  # thin spaces and math delimiters
            elif c == "%":
                self._emit("pct", i, i + 2)
            else:
                self._emit("sym", i, i + 2)
            return i + 2
        k = i + 1
        while k < len(text) and text[k].isalpha():
            k += 1
        name = text[i + 1 : k]
        if name in _LATEX_OPS:
            self._emit("op", i, k, op=_LATEX_OPS[name])
        elif name in _LATEX_FRAC:
            j = self._skip_spaces(k)
            if j < len(text) and text[j] == "{":
                self._emit("lp", i, k)
                self._emit("lp", j, j + 1)
                self.braces.append("num")
                return j + 1
            self._emit("sym", i, k)
        elif name in _LATEX_GROUPS:
            j = self._skip_spaces(k)
            if j < len(text) and text[j] == "{":
                self.braces.append("group")
                self.space = True
                return j + 1
        elif name in _LATEX_SPACES:
            self.space = True
        elif name in _LATEX_TRANSPARENT:
            pass
        elif name in _LATEX_APPROX:
            self._emit("approx", i, k)
        elif name in _LATEX_PUNCT:
            self._emit("punct", i, k)
        elif name in _LATEX_ELLIPSIS:
            self._emit("ellipsis", i, k)
        else:
            self._emit("sym", i, k)  # \sqrt, \pi, \log, ...: not arithmetic this reader knows
        return k


def _is_operand_start(tokens: list[_Tok], j: int, *, signed: bool) -> bool:
    if j >= len(tokens):
        return False
    tok = tokens[j]
    if tok.kind in ("num", "lp"):
        return True
    return (
        signed
        and tok.kind == "op"
        and tok.op == "-"
        and _is_operand_start(tokens, j + 1, signed=False)
    )


def _is_unit(tok: _Tok) -> bool:
    word = tok.text
    if word.lower() in _NOT_UNITS:
        return False
    if not tok.space:
        return word in _ATTACHED_UNITS
    if len(word) == 1:
        return word in _SPACED_LETTER_UNITS
    return True


def _absorb_unit_power(raw: list[_Tok], j: int, unit: str) -> tuple[int, str]:
    """``m^2``, ``m²`` after a unit belong to the unit."""
    if (
        j + 1 < len(raw)
        and raw[j].kind == "op"
        and raw[j].op == "^"
        and not raw[j].space
        and raw[j + 1].kind == "num"
        and not raw[j + 1].space
    ):
        return j + 2, f"{unit}^{raw[j + 1].text}"
    return j, unit


def _unit_word(raw: list[_Tok], j: int) -> bool:
    if j >= len(raw) or raw[j].kind != "word":
        return False
    word = raw[j].text
    return word.lower() not in _NOT_UNITS and (len(word) > 1 or word in _SPACED_LETTER_UNITS)


def _classify(raw: list[_Tok]) -> list[_Tok]:
    """Decide what stars and words mean from their neighbours; attach units to numbers."""
    out: list[_Tok] = []
    i = 0
    while i < len(raw):
        tok = raw[i]
        prev = out[-1] if out else None
        nxt = raw[i + 1] if i + 1 < len(raw) else None
        operand_before = prev is not None and prev.kind in _OPERAND_END
        if tok.kind in ("star", "dstar"):
            if operand_before and _is_operand_start(raw, i + 1, signed=True):
                tok.op = "*" if tok.kind == "star" else "^"
                tok.kind = "op"
                out.append(tok)
            elif (not tok.space and prev is not None and prev.end == tok.start) and (
                nxt is None or nxt.space or nxt.kind == "punct"
            ):
                if nxt is not None:
                    nxt.space = True  # closing Markdown emphasis
            elif (prev is None or tok.space or prev.kind == "punct") and (
                nxt is not None and nxt.start == tok.end
            ):
                nxt.space = True  # opening Markdown emphasis
            else:
                tok.kind = "sym"
                out.append(tok)
            i += 1
            continue
        if tok.kind != "word":
            out.append(tok)
            i += 1
            continue
        low = tok.text.lower()
        if (
            low in ("x", "times", "plus", "minus")
            and operand_before
            and _is_operand_start(raw, i + 1, signed=False)
        ):
            tok.kind, tok.op = "op", {"x": "*", "times": "*", "plus": "+", "minus": "-"}[low]
            out.append(tok)
            i += 1
            continue
        if (
            low in ("multiplied", "divided")
            and operand_before
            and nxt is not None
            and nxt.kind == "word"
            and nxt.text.lower() == "by"
            and _is_operand_start(raw, i + 2, signed=False)
        ):
            tok.kind, tok.op = "op", "*" if low == "multiplied" else "/"
            out.append(tok)
            i += 2
            continue
        if low == "of" and operand_before and _is_operand_start(raw, i + 1, signed=False):
            tok.kind = "of"
            out.append(tok)
            i += 1
            continue
        if prev is not None and prev.kind == "num" and low in ("percent", "pct"):
            tok.kind = "pct"
            out.append(tok)
            i += 1
            continue
        if (
            prev is not None
            and prev.kind == "num"
            and low == "per"
            and nxt is not None
            and nxt.kind == "word"
            and nxt.text.lower() == "cent"
        ):
            tok.kind = "pct"
            out.append(tok)
            i += 2
            continue
        if (
            prev is not None
            and prev.kind == "num"
            and prev.unit is None
            and (_is_unit(tok) or (low == "per" and tok.space and _unit_word(raw, i + 1)))
        ):
            if low == "per":  # "$18 per hour"
                j, unit = _absorb_unit_power(raw, i + 2, f"per {raw[i + 1].text}")
            else:
                j, unit = _absorb_unit_power(raw, i + 1, tok.text)
            while True:
                if (
                    j + 1 < len(raw)
                    and raw[j].kind == "op"
                    and raw[j].op == "/"
                    and _unit_word(raw, j + 1)
                ) or (
                    j + 1 < len(raw)
                    and raw[j].kind == "word"
                    and raw[j].text.lower() == "per"
                    and _unit_word(raw, j + 1)
                ):
                    j, unit = _absorb_unit_power(raw, j + 2, f"{unit}/{raw[j + 1].text}")
                else:
                    break
            prev.unit = unit
            prev.end = raw[j - 1].end
            i = j
            continue
        out.append(tok)
        i += 1
    return out


def _runs(tokens: list[_Tok]) -> list[tuple[int, int]]:
    """Maximal stretches of arithmetic tokens, as ``(start, end)`` index ranges.

    Two operands side by side (``Step 2 9 * 2``) end one run and start the next.
    """
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for idx, tok in enumerate(tokens):
        if tok.kind in _RUN_KINDS:
            if start is None:
                if tok.kind == "rp":
                    tok.kind = "close"  # closes a parenthesis of words: punctuation
                    continue
                start = idx
            elif tok.kind == "num" and tokens[idx - 1].kind in _OPERAND_END:
                runs.append((start, idx))
                start = idx
            continue
        if tok.kind == "ellipsis" and idx and tokens[idx - 1].kind == "num":
            tokens[idx - 1].repeating = True
        if start is not None:
            runs.append((start, idx))
            start = None
    if start is not None:
        runs.append((start, len(tokens)))
    return runs


# ----------------------------------------------------------------------------------------------
# Evaluation


class _Skip(Exception):
    """This side cannot be read with confidence, or is over a limit."""


@dataclass(slots=True)
class _Value:
    value: Fraction
    kind: Literal["literal", "percent", "fraction", "other"]
    ulp: Fraction | None = None
    """One unit in the last digit shown, for a bare decimal (or decimal percentage)."""
    repeating: bool = False
    integer_literal: bool = False
    has_power: bool = False


@dataclass(slots=True)
class _Side:
    value: Fraction
    kind: Literal["literal", "percent", "fraction", "other"]
    ulp: Fraction | None
    repeating: bool
    ambiguous: bool
    units: frozenset[str]
    lead: Fraction | None
    """The first number, when the side is a computation (for the running-total rule)."""
    start: int
    end: int

    @property
    def bare(self) -> bool:
        return self.kind == "literal"


def _check_size(value: Fraction) -> Fraction:
    if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
        raise _Skip
    return value


class _Parser:
    """Recursive descent over one side of a claim.

    ``expr := term (('+'|'-') term)*``; ``term := unary (('*'|'/'|'of'|implicit) unary)*``;
    ``unary := ('+'|'-') unary | power``; ``power := postfix ('^' unary)?``;
    ``postfix := primary '%'?``; ``primary := NUM | '(' expr ')'``.
    """

    def __init__(self, tokens: list[_Tok]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0
        self.ambiguous = False
        self.units: set[str] = set()

    def parse(self) -> _Value:
        result = self.expr()
        if self.pos != len(self.tokens):
            raise _Skip
        return result

    def _peek(self) -> _Tok | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _peek_op(self, ops: str) -> str | None:
        tok = self._peek()
        if tok is not None and tok.kind == "op" and tok.op in ops:
            return tok.op
        return None

    def expr(self) -> _Value:
        first = self.term()
        value, terms, percents = first.value, 1, int(first.kind == "percent")
        while (op := self._peek_op("+-")) is not None:
            self.pos += 1
            right = self.term()
            value = _check_size(value + right.value if op == "+" else value - right.value)
            terms += 1
            percents += int(right.kind == "percent")
        if 0 < percents < terms:
            self.ambiguous = True  # 100 - 20% is 99.8 exactly, but 80 on a calculator
        return first if terms == 1 else _Value(value, "other")

    def term(self) -> _Value:
        first = self.unary()
        value, count, divided, simple_fraction = first.value, 1, False, False
        while True:
            tok = self._peek()
            if tok is None:
                break
            if tok.kind == "op" and tok.op in "*/":
                self.pos += 1
                right = self.unary()
                if tok.op == "/":
                    if right.value == 0:
                        raise _Skip
                    value /= right.value
                    divided = True
                    simple_fraction = count == 1 and first.integer_literal and right.integer_literal
                else:
                    value *= right.value
                    simple_fraction = False
            elif tok.kind == "of":
                of_ok = (count == 1 and first.kind in ("percent", "fraction")) or simple_fraction
                if not of_ok:
                    raise _Skip
                self.pos += 1
                value *= self.unary().value
                simple_fraction = False
            elif tok.kind == "lp":
                if divided:
                    self.ambiguous = True  # 6/2(1+2)
                value *= self.unary().value
                simple_fraction = False
            else:
                break
            count += 1
            _check_size(value)
        if count == 1:
            return first
        return _Value(value, "fraction" if count == 2 and simple_fraction else "other")

    def unary(self) -> _Value:
        op = self._peek_op("+-")
        if op is None:
            return self.power()
        self.pos += 1
        self._enter()
        operand = self.unary()
        self.depth -= 1
        if operand.has_power and op == "-":
            self.ambiguous = True  # -2^2
        if op == "+":
            return operand
        return _Value(
            -operand.value,
            operand.kind,
            ulp=operand.ulp,
            repeating=operand.repeating,
            has_power=operand.has_power,
        )

    def power(self) -> _Value:
        base = self.postfix()
        if self._peek_op("^") is None:
            return base
        self.pos += 1
        self._enter()
        exponent = self.unary().value
        self.depth -= 1
        if exponent.denominator != 1 or abs(exponent) > MAX_EXPONENT:
            raise _Skip
        e = int(exponent)
        if base.value == 0 and e < 0:
            raise _Skip
        bits = max(base.value.numerator.bit_length(), base.value.denominator.bit_length())
        if bits * abs(e) > MAX_BITS:
            raise _Skip
        return _Value(_check_size(base.value**e), "other", has_power=True)

    def postfix(self) -> _Value:
        primary = self.primary()
        tok = self._peek()
        if tok is None or tok.kind != "pct":
            return primary
        self.pos += 1
        ulp = primary.ulp / 100 if primary.ulp is not None else None
        kind: Literal["percent", "other"] = "percent" if primary.kind == "literal" else "other"
        return _Value(primary.value / 100, kind, ulp=ulp, repeating=primary.repeating)

    def primary(self) -> _Value:
        tok = self._peek()
        if tok is None:
            raise _Skip
        self.pos += 1
        if tok.kind == "num":
            if tok.unit is not None:
                self.units.add(_normalize_unit(tok.unit))
            if tok.repeating:
                ulp: Fraction | None = Fraction(1, 10 ** (tok.decimals or 0))
            else:
                ulp = Fraction(1, 10**tok.decimals) if tok.decimals else None
            if tok.vulgar:
                return _Value(tok.value, "fraction")
            return _Value(
                tok.value,
                "literal",
                ulp=ulp,
                repeating=tok.repeating,
                integer_literal=tok.decimals is None and not tok.repeating,
            )
        if tok.kind == "lp":
            self._enter()
            inner = self.expr()
            self.depth -= 1
            close = self._peek()
            if close is None or close.kind != "rp":
                raise _Skip
            self.pos += 1
            if inner.has_power:  # (-(2^2)) is not ambiguous
                inner = replace(inner, has_power=False)
            return inner
        raise _Skip

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Skip


def _normalize_unit(unit: str) -> str:
    low = unit.lower()
    return low[:-1] if len(low) > 2 and low.endswith("s") else low


def _evaluate(tokens: list[_Tok]) -> _Side | None:
    if not tokens or len(tokens) > MAX_TOKENS:
        return None
    parser = _Parser(tokens)
    try:
        result = parser.parse()
    except (_Skip, ZeroDivisionError):
        return None
    first = tokens[0]
    return _Side(
        value=result.value,
        kind=result.kind,
        ulp=result.ulp,
        repeating=result.repeating,
        ambiguous=parser.ambiguous,
        units=frozenset(parser.units),
        lead=first.value if first.kind == "num" and result.kind == "other" else None,
        start=first.start,
        end=tokens[-1].end,
    )


def _depth(tokens: list[_Tok]) -> int:
    return sum(tok.kind == "lp" for tok in tokens) - sum(tok.kind == "rp" for tok in tokens)


def _left_safe(before: _Tok | None, first: _Tok, side: _Side) -> bool:
    """Whether the left side of a run's first link can be trusted to start where it starts."""
    if before is None:
        return True
    if before.kind == "punct":
        return first.kind != "op" or before.text in _SIGN_OK_PUNCT
    if before.kind == "close":
        return first.kind != "op" and first.space
    if before.kind != "word":
        return False  # an unknown symbol, an ellipsis, or an operand right before
    word = before.text
    if not first.space or word.lower() in _LEFT_BLOCK:
        return False
    if len(word) == 1 and word not in _HARMLESS_LETTERS:
        return False
    # After a word, a sign may be a binary minus and a lone number an operand of the words.
    return first.kind != "op" and not side.bare


def _continues_number(tokens: list[_Tok], j: int, side: _Side) -> bool:
    """``3 and a half``, ``3 and 1/2``, ``3 hours and 20 minutes``: the number goes on."""
    if j >= len(tokens):
        return False
    tok = tokens[j]
    if tok.kind == "word":
        return tok.text.lower() in _FRACTION_WORDS
    if tok.kind != "num":
        return False
    if tok.vulgar or tok.unit is not None or side.units:
        return True
    return j + 1 < len(tokens) and tokens[j + 1].kind == "op" and tokens[j + 1].op == "/"


def _right_safety(tokens: list[_Tok], end: int, side: _Side) -> Literal["safe", "unsure", "unsafe"]:
    """Whether the right side of a run's last link can be trusted to end where it ends.

    ``"unsure"``: trusted only if the claim holds (``= 4!`` is an exclamation or a factorial).
    """
    if end >= len(tokens):
        return "safe"
    after = tokens[end]
    if after.kind == "ellipsis":
        return "safe"
    if after.kind == "punct":
        if after.text == "," and _continues_number(tokens, end + 1, side):
            return "unsafe"
        return "safe"
    if after.kind == "sym" and after.text == "!":
        return "unsure"
    if after.kind != "word" or not after.space:
        return "unsafe"  # an unknown symbol, an operand right after, or letters stuck to it
    word = after.text
    low = word.lower()
    if low in _RIGHT_BLOCK or (len(word) == 1 and word not in _HARMLESS_LETTERS):
        return "unsafe"
    if low == "and" and _continues_number(tokens, end + 1, side):
        return "unsafe"
    return "safe"


def _compare(left: _Side, right: _Side) -> tuple[bool, bool]:
    """``(holds, by rounding)``; see the rounding rule in the module documentation."""
    if left.value == right.value:
        return True, False
    for shown, exact in ((right, left), (left, right)):
        if shown.ulp is None:
            continue
        diff = abs(exact.value - shown.value)
        if shown.repeating:
            ok = diff < shown.ulp
        else:
            ok = 2 * diff <= shown.ulp and (exact.value / shown.ulp).denominator != 1
        return ok, ok
    return False, False


_MEASURE_WORDS = (
    "s sec secs second seconds min mins minute minutes h hr hrs hour hours day days week "
    "weeks month months year years mm cm m km meter meters metre metres kilometer kilometers "
    "in inch inches ft foot feet yd yard yards mile miles g kg gram grams kilogram kilograms "
    "lb lbs pound pounds oz ounce ounces l ml liter liters litre litres gallon gallons cup "
    "cups cent cents dollar dollars euro euros dozen dozens pair pairs percent"
)
_MEASURES = frozenset(_normalize_unit(unit) for unit in _MEASURE_WORDS.split())
"""Units that convert into one another (``2 * 60 min = 2 hours``, ``3 dozen = 36``): a false
verdict across two of them may be a conversion, not an error. Counted things (``rows``,
``boxes``, ``eggs``) do not convert, so ``4 rows + 6 = 12 boxes`` is false."""


def _unsure(left: _Side, right: _Side) -> bool:
    """A false verdict on this link would be a guess."""
    units = left.units | right.units
    if left.ambiguous or right.ambiguous or (len(units) >= 2 and units & _MEASURES):
        return True
    return right.lead is not None and right.lead == left.value  # 6 * 7 = 42 + 3 = 45


def _run_claims(text: str, tokens: list[_Tok], start: int, end: int, out: list[Claim]) -> None:
    bounds: list[tuple[int, int]] = []
    seps: list[str] = []
    lo = start
    for idx in range(start, end):
        if tokens[idx].kind in ("eq", "approx"):
            bounds.append((lo, idx))
            seps.append(tokens[idx].kind)
            lo = idx + 1
    if not seps:
        return
    bounds.append((lo, end))
    segments = [tokens[a:b] for a, b in bounds]
    # "(6 * 7 = 42)", "= 42 (the answer": parentheses around the whole chain, or a remark after it
    first, last = segments[0], segments[-1]  # two different segments: there is a separator
    cut, depth = 0, _depth(first)
    while cut < len(first) and first[cut].kind == "lp" and depth > 0:
        cut, depth = cut + 1, depth - 1
    left_open, segments[0] = cut > 0, first[cut:]
    keep = len(last)
    while keep and last[keep - 1].kind == "lp":
        keep -= 1
    depth = _depth(last[:keep])
    while keep and last[keep - 1].kind == "rp" and depth < 0:
        keep, depth = keep - 1, depth + 1
    right_open, segments[-1] = keep < len(last), last[:keep]
    sides = [_evaluate(segment) for segment in segments]
    before = tokens[start - 1] if start else None
    final = len(seps) - 1
    for k, sep in enumerate(seps):
        left, right = sides[k], sides[k + 1]
        if sep != "eq" or left is None or right is None:
            continue
        if k == 0 and not left_open and not _left_safe(before, segments[0][0], left):
            continue
        if k == final and not right_open:
            safety = _right_safety(tokens, end, right)
            if safety == "unsafe":
                continue
        else:
            safety = "safe"
        if k == 0 and left.bare and right.bare:
            continue  # "1 hour = 60 minutes", "Step 3 = 3"
        holds, rounded = _compare(left, right)
        if not holds and (safety == "unsure" or _unsure(left, right)):
            continue
        out.append(
            Claim(
                text=text[left.start : right.end],
                left=left.value,
                right=right.value,
                holds=holds,
                rounded=rounded,
                start=left.start,
                end=right.end,
            )
        )


def open_value(text: str) -> Fraction | None:
    """The exact value of the arithmetic that ``text`` ends with, right before a final ``=``.

    ``"4 pens cost 4 * 3 ="`` gives 12 and ``"20% of 50 ="`` gives 10: what a calculator would
    write next. ``None`` when the text does not end with ``=``, or when what comes before it is
    not arithmetic this module reads with confidence (a lone number: ``"Step 1: 15 ="``; a
    variable; a left side that may be cut short; anything over the limits). The same reader as
    :func:`find_claims`, so a value given here is one that a claim check agrees with.
    """
    stripped = text.rstrip()
    if not stripped.endswith("=") or stripped.endswith(("==", "<=", ">=", "!=")):
        return None
    probe = stripped + " 0"
    for claim in reversed(find_claims(probe)):
        if claim.end == len(probe):
            return claim.left
    return None
