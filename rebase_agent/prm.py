"""The process-reward toolkit every scorer shares: label probabilities, the prefix score cache,
the Math-Shepherd input and the LLM-judge prompts.

A generative PRM or an LLM judge answers with one label token; its score is the probability of
the positive label over both labels:

- :func:`label_probability` reads it from a server's top logprobs (token text to log-probability;
  spellings summed, a label missing from the top-k bounded);
- :func:`logit_label_probability` reads it exactly from the logits of the label tokens (the
  llama.cpp scorer);
- :func:`class_probability` reads a classifier PRM's row of class probabilities or logits
  (vLLM ``/pooling``).

:class:`CachedScorer` implements :meth:`~rebase_agent.Scorer.score` over a cache keyed by
``(problem, steps)`` prefix, so a node's steps are never scored twice. The Math-Shepherd input
is :func:`math_shepherd_segments`; the judge prompts are :data:`JUDGE_PROMPT` (one prompt ending
in ``Answer:``, for completions) and :data:`JUDGE_SYSTEM` with :data:`JUDGE_USER` (chat), filled
by :class:`JudgeTemplate` from :func:`judge_fields`.
"""

from __future__ import annotations

import math
import string
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from rebase_agent.exceptions import ProviderError, ScoringError
from rebase_agent.protocols import ScoreRequest
from rebase_agent.templates import describe

__all__ = (
    "JUDGE_FIELDS",
    "JUDGE_PROMPT",
    "JUDGE_SYSTEM",
    "JUDGE_USER",
    "MATH_SHEPHERD_LABELS",
    "MATH_SHEPHERD_TAG",
    "YES_NO_LABELS",
    "CachedScorer",
    "JudgeTemplate",
    "LabelProbability",
    "class_probability",
    "judge_fields",
    "label_probability",
    "logit_label_probability",
    "math_shepherd_segments",
    "math_shepherd_text",
    "normalize_token",
    "spelling_variants",
)

Prefix = tuple[str, ...]

# -- labels -------------------------------------------------------------------------------------

YES_NO_LABELS = (("Yes",), ("No",))
"""The judge's positive and negative labels."""

MATH_SHEPHERD_LABELS = (("+",), ("-",))
"""The positive and negative labels of Math-Shepherd-style PRMs."""


def spelling_variants(labels: Iterable[str]) -> tuple[str, ...]:
    """Each label as written, lower-cased and upper-cased, each bare and after a space.

    For tokenizers that need the exact text of a token (``"Yes"`` gives ``Yes``, `` Yes``,
    ``yes``, `` yes``, ``YES``, `` YES``); :func:`normalize_token` folds the same variants.
    """
    seen: dict[str, None] = {}
    for label in labels:
        for word in (label, label.lower(), label.upper()):
            seen.setdefault(word, None)
            seen.setdefault(" " + word, None)
    return tuple(seen)


def normalize_token(token: str) -> str:
    """Fold a token's spelling: word-start markers, surrounding space and case."""
    return token.replace("\u2581", " ").replace("\u0120", " ").strip().casefold()


@dataclass(frozen=True)
class LabelProbability:
    """The probability mass of the two labels, and whether both were seen in the top-k."""

    positive: float
    negative: float
    confident: bool

    @property
    def score(self) -> float:
        """``positive / (positive + negative)``, or 0.5 when both are zero."""
        total = self.positive + self.negative
        return self.positive / total if total > 0 else 0.5


def label_probability(
    logprobs: Mapping[str, float],
    positive: Iterable[str],
    negative: Iterable[str],
) -> LabelProbability:
    """Sum the probability of each label's spellings among a server's top tokens.

    A label missing from the top-k is bounded: its probability is at most the smallest
    probability listed and at most the mass not listed. When both labels are missing the score
    is 0.5, flagged as not confident.

    Args:
        logprobs: Token text to log-probability, for the first generated token (the top-k
            list, plus the sampled token).
        positive: Spellings of the positive label (``"Yes"``, ``"+"``); normalised with
            :func:`normalize_token`, so ``"Yes"`` also matches ``" yes"``.
        negative: Spellings of the negative label.

    Returns:
        The two masses, a missing one replaced by its upper bound.
    """
    pos_keys = {normalize_token(p) for p in positive}
    neg_keys = {normalize_token(n) for n in negative}
    probs = {token: math.exp(lp) for token, lp in logprobs.items() if math.isfinite(lp)}
    pos = sum(p for t, p in probs.items() if normalize_token(t) in pos_keys)
    neg = sum(p for t, p in probs.items() if normalize_token(t) in neg_keys)
    seen_pos = any(normalize_token(t) in pos_keys for t in probs)
    seen_neg = any(normalize_token(t) in neg_keys for t in probs)
    if seen_pos and seen_neg:
        return LabelProbability(pos, neg, confident=True)
    if not seen_pos and not seen_neg:
        return LabelProbability(0.0, 0.0, confident=False)
    bound = min(min(probs.values()), max(0.0, 1.0 - sum(probs.values())))
    if seen_pos:
        return LabelProbability(pos, bound, confident=True)
    return LabelProbability(bound, neg, confident=True)


def _softmax_mass(logits: Sequence[float], indices: Collection[int]) -> float:
    """The softmax probability of ``indices`` among ``logits``."""
    top = max(logits)
    weights = [math.exp(x - top) for x in logits]
    return sum(w for i, w in enumerate(weights) if i in indices) / sum(weights)


def logit_label_probability(logits: Sequence[float], n_positive: int) -> float:
    """P(positive) from the next-token logits of the label tokens, exactly.

    Args:
        logits: The logits of every label token's id: ``n_positive`` positive spellings first,
            then the negative ones.
        n_positive: How many of ``logits`` belong to the positive label.
    """
    return _softmax_mass(logits, range(n_positive))


def class_probability(row: Sequence[float], positive: int) -> float:
    """The probability of class ``positive`` from a classifier's row of probabilities (all in
    ``[0, 1]``, renormalised) or of logits (softmax).

    Raises:
        ScoringError: Fewer than two classes, or no class ``positive``.
    """
    values = [float(v) for v in row]
    if len(values) < 2 or positive >= len(values):
        raise ScoringError(f"expected a row of at least 2 class values, got {row!r}")
    if all(0.0 <= v <= 1.0 for v in values):
        total = sum(values)
        return values[positive] / total if total > 0 else 0.5
    return _softmax_mass(values, (positive,))


# -- the prefix score cache ---------------------------------------------------------------------


class CachedScorer:
    """Implements :meth:`score` over a prefix cache; subclasses score only what is missing.

    Scores are cached per ``(problem, steps)`` prefix. Two kinds of scorer share the base:

    - whole-solution scorers (``scores_all_steps = True``: pooling PRMs, Math-Shepherd) score
      every step of a solution in one pass, so one call fills the cache for all its prefixes;
      only solutions with an unscored prefix are sent, and a prefix of another one being sent
      is not sent separately (:meth:`score_solutions`);
    - last-step scorers (judges, generative PRMs) score one prefix each, so only the prefixes
      not yet scored are sent (in REBASE: one per new node; :meth:`score_last_steps`).

    Scores of a causal PRM at step ``i`` do not depend on later steps, so the cache is exact.

    Args:
        cache_size: Prefix scores kept (least recently used go first).
    """

    scores_all_steps: bool = False
    """``True``: :meth:`score_solutions` is used; ``False``: :meth:`score_last_steps`."""

    def __init__(self, *, cache_size: int = 100_000) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self._cache: OrderedDict[tuple[str, Prefix], float] = OrderedDict()
        self._cache_size = cache_size
        self.sent_prefixes = 0
        """Prefixes (or solutions, for whole-solution scorers) sent to be scored so far."""

    def _get(self, problem: str, prefix: Prefix) -> float | None:
        key = (problem, prefix)
        value = self._cache.get(key)
        if value is not None:
            self._cache.move_to_end(key)
        return value

    def _put(self, problem: str, prefix: Prefix, value: float) -> None:
        self._cache[(problem, prefix)] = value
        self._cache.move_to_end((problem, prefix))
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def score(self, request: ScoreRequest) -> list[list[float]]:
        """Score every step of every solution, sending only what is not cached.

        Raises:
            ScoringError: The scoring failed (a provider error is re-raised as one), or the
                answer had the wrong shape.
        """
        problem = request.problem
        known: dict[Prefix, float] = {}
        missing: dict[Prefix, None] = {}
        for solution in request.solutions:
            for depth in range(1, len(solution) + 1):
                prefix = tuple(solution[:depth])
                if prefix in known or prefix in missing:
                    continue
                value = self._get(problem, prefix)
                if value is None:
                    missing[prefix] = None
                else:
                    known[prefix] = value
        if missing:
            try:
                known.update(await self._fill(problem, list(missing)))
            except ProviderError as exc:
                raise ScoringError(str(exc)) from exc
        return [
            [known[tuple(solution[:depth])] for depth in range(1, len(solution) + 1)]
            for solution in request.solutions
        ]

    async def _fill(self, problem: str, missing: list[Prefix]) -> dict[Prefix, float]:
        fresh: dict[Prefix, float] = {}
        if self.scores_all_steps:
            covered = {p[:depth] for p in missing for depth in range(1, len(p))}
            longest = [p for p in missing if p not in covered]
            self.sent_prefixes += len(longest)
            results = await self.score_solutions(problem, longest)
            if len(results) != len(longest):
                raise ScoringError(f"asked for {len(longest)} solutions, got {len(results)}")
            for solution, row in zip(longest, results, strict=True):
                if len(row) != len(solution):
                    raise ScoringError(
                        f"{len(solution)} steps but {len(row)} step scores; check the step tag"
                    )
                for depth, value in enumerate(row, start=1):
                    fresh[solution[:depth]] = _finite(value)
        else:
            self.sent_prefixes += len(missing)
            values = await self.score_last_steps(problem, missing)
            if len(values) != len(missing):
                raise ScoringError(f"asked for {len(missing)} scores, got {len(values)}")
            fresh = {p: _finite(v) for p, v in zip(missing, values, strict=True)}
        for prefix, value in fresh.items():
            self._put(problem, prefix, value)
        return fresh

    async def score_solutions(self, problem: str, solutions: list[Prefix]) -> list[list[float]]:
        """Score every step of each solution (whole-solution scorers implement this)."""
        raise NotImplementedError(f"{type(self).__name__} does not score whole solutions")

    async def score_last_steps(self, problem: str, prefixes: list[Prefix]) -> list[float]:
        """Score the last step of each prefix (last-step scorers implement this)."""
        raise NotImplementedError(f"{type(self).__name__} does not score last steps")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ScoringError(f"non-finite score {value!r}")
    return float(value)


# -- Math-Shepherd ------------------------------------------------------------------------------

MATH_SHEPHERD_TAG = " ки"
"""The Math-Shepherd step tag as written after each step, with the space before it."""


def math_shepherd_segments(
    problem: str, steps: Sequence[str], tag: str = MATH_SHEPHERD_TAG
) -> list[tuple[str, bool]]:
    """The Math-Shepherd input ``f"{problem} {step1} ки\\n{step2} ки"``, in pieces.

    The pieces are ``problem + " "``, then for each step its text (stripped, tags removed) and
    ``tag``, with ``"\\n"`` between steps. Each comes with whether a step's score is read at its
    last token (true for the tags), so a tokenizer that tokenizes piece by piece finds the
    positions exactly.

    Args:
        problem: The problem text.
        steps: The steps so far.
        tag: The text written after each step (default `` ки``).
    """
    bare = tag.strip() or tag
    pieces = [(problem + " ", False)]
    for i, step in enumerate(steps):
        if i:
            pieces.append(("\n", False))
        pieces += [(step.replace(bare, "").strip(), False), (tag, True)]
    return pieces


def math_shepherd_text(problem: str, steps: Sequence[str], tag: str = MATH_SHEPHERD_TAG) -> str:
    """The Math-Shepherd input as one string (see :func:`math_shepherd_segments`)."""
    return "".join(text for text, _ in math_shepherd_segments(problem, steps, tag))


# -- LLM-as-judge prompts -----------------------------------------------------------------------

JUDGE_PROMPT = (
    "Below is a math problem and a solution, step by step. Decide whether the last step is "
    "correct.\n\nProblem: {problem}\n\nSolution:\n{previous}{step}\n\n"
    "Is the last step correct (Yes or No)? Answer:"
)
"""The judge prompt for completions (base or instruct models, llama.cpp and servers alike); the
label is predicted right after ``Answer:``."""

JUDGE_SYSTEM = (
    "You check solutions to problems one step at a time. Reply with exactly one word: Yes or No."
)
"""The system turn of a chat judge."""

JUDGE_USER = (
    "Problem:\n{problem}\n\nSolution so far:\n{so_far}\n\nLast step:\n{last}\n\n"
    "Is the last step correct? Answer Yes or No."
)
"""The user turn of a chat judge."""

JUDGE_FIELDS = ("problem", "previous", "step", "last", "so_far", "solution")
"""The fields a judge template may use (see :func:`judge_fields`)."""


def judge_fields(problem: str, steps: Sequence[str]) -> dict[str, str]:
    """The values of the judge fields for the last of ``steps``.

    - ``problem``: the problem;
    - ``previous``: the steps before the judged one, verbatim (each with its delimiter), or
      ``""``;
    - ``step``: the judged step without trailing whitespace; ``last``: the same, stripped;
    - ``so_far``: the steps before the judged one, stripped, or ``"(none)"``;
    - ``solution``: every step, stripped.
    """
    last = steps[-1] if steps else ""
    previous = "".join(steps[:-1])
    return {
        "problem": problem,
        "previous": previous,
        "step": last.rstrip(),
        "last": last.strip(),
        "so_far": previous.strip() or "(none)",
        "solution": "".join(steps).strip(),
    }


class JudgeTemplate:
    """A judge prompt: a ``str.format`` string over the :data:`JUDGE_FIELDS`.

    Args:
        source: The format string, e.g. :data:`JUDGE_PROMPT`.
        name: What the template is, for error messages (``"judge_template"``).

    Raises:
        ValueError: Not a valid format string, or a field that is not a judge field; the message
            names the template and the field.
    """

    def __init__(self, source: str, *, name: str = "judge template") -> None:
        where = f"{name} {describe(source)}"
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(source) if f is not None]
        except ValueError as exc:
            raise ValueError(f"{where}: {exc} (write literal braces as {{{{ and }}}})") from exc
        for field in fields:
            if field.partition(".")[0].partition("[")[0] not in JUDGE_FIELDS:
                known = ", ".join("{" + f + "}" for f in JUDGE_FIELDS)
                raise ValueError(
                    f"{where}: unknown placeholder {{{field}}}; the fields are {known}"
                )
        try:
            source.format(**judge_fields("", ("",)))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise ValueError(f"{where}: does not render: {exc}") from exc
        self.source = source

    def render(self, problem: str, steps: Sequence[str]) -> str:
        """The prompt for the last of ``steps``."""
        return self.source.format(**judge_fields(problem, steps))

    def __repr__(self) -> str:
        return f"JudgeTemplate({self.source!r})"
