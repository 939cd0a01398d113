"""A scorer base that never scores a prefix twice.

Scores are cached per ``(problem, steps)`` prefix. Two kinds of scorer share the base:

- whole-solution scorers (pooling PRMs) score every step of a solution in one pass, so one call
  fills the cache for all its prefixes; only solutions with an unscored prefix are sent, and a
  solution that is a prefix of another one being sent is not sent separately;
- last-step scorers (judges, generative PRMs) score one prefix per request, so only the
  prefixes not yet scored are sent (in REBASE: one per new node).

Scores of a causal PRM at step ``i`` do not depend on later steps, so the cache is exact.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from rebase_agent.exceptions import ProviderError, ScoringError
from rebase_agent.protocols import ScoreRequest

__all__ = ("CachedScorer",)

Prefix = tuple[str, ...]


class CachedScorer:
    """Implements :meth:`score` over a prefix cache; subclasses send the uncached work.

    Args:
        cache_size: Prefix scores kept (least recently used go first).
    """

    scores_all_steps: bool = False
    """``True``: :meth:`_score_solutions` is used; ``False``: :meth:`_score_last_steps`."""

    def __init__(self, *, cache_size: int = 100_000) -> None:
        self._cache: OrderedDict[tuple[str, Prefix], float] = OrderedDict()
        self._cache_size = cache_size
        self.sent_prefixes = 0
        """Prefixes (or solutions, for whole-solution scorers) sent to the server so far."""

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
            ScoringError: The server failed (after retries), or answered with the wrong shape.
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
            results = await self._score_solutions(problem, longest)
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
            values = await self._score_last_steps(problem, missing)
            if len(values) != len(missing):
                raise ScoringError(f"asked for {len(missing)} scores, got {len(values)}")
            fresh = {p: _finite(v) for p, v in zip(missing, values, strict=True)}
        for prefix, value in fresh.items():
            self._put(problem, prefix, value)
        return fresh

    async def _score_solutions(self, problem: str, solutions: list[Prefix]) -> list[list[float]]:
        """Score every step of each solution (whole-solution scorers)."""
        raise NotImplementedError(f"{type(self).__name__} does not score whole solutions")

    async def _score_last_steps(self, problem: str, prefixes: list[Prefix]) -> list[float]:
        """Score the last step of each prefix (last-step scorers)."""
        raise NotImplementedError(f"{type(self).__name__} does not score last steps")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ScoringError(f"non-finite score {value!r}")
    return float(value)
