"""Label probabilities from top logprobs: P(Yes)/(P(Yes)+P(No)) and the like.

A judge or a generative PRM answers with one label token; its score is the probability mass of
the positive label over both labels, read from the first token's ``top_logprobs`` (not from the
sampled token). Spelling variants are summed (``Yes``, `` Yes``, ``yes``, ``▁Yes``). A label
missing from the top-k is bounded: its probability is at most the smallest probability listed
and at most the mass not listed. When both labels are missing the score is 0.5, flagged as not
confident.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ("LabelProbability", "label_probability", "normalize_token")


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
    """Sum the probability of each label's spellings among the top tokens.

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
