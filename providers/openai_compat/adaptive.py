"""Per-endpoint concurrency that adapts to the server (AIMD), instead of a fixed cap.

:class:`AdaptiveLimit` wraps an :class:`anyio.CapacityLimiter` whose ``total_tokens`` it moves:

- **grow while latency holds**: a request that finishes in time while the limit was full adds
  to it, by 1 per request below a threshold (slow start: doubling every round trip) and by
  ``1 / limit`` above it (one more per round trip), as TCP does;
- **jump while latency is flat**: in slow start, once the short-term average latency is within
  ``flat_tolerance`` of the lowest latency seen (the server answers as fast with the limit full
  as it did unloaded: nothing queues there), each answer may double the limit, up to what is
  waiting for it; so a search that fans out from 32 requests to 2,000 is not held back for
  round trips by a server that has room, while a small server (whose answers queue behind its
  few slots) gets the slow start;
- **back off on overload**: a 429 or 503 halves the limit, and a latency that rises cuts it by
  ``latency_backoff``: rising means the short-term average (the last ten answers or so) above
  ``latency_tolerance`` times the long-term one (the last hundred or so), so requests that
  differ in length (a one-line step against a 256-token one) average out in both; only requests
  sent after the last cut can cut again, so one burst of errors (requests sent under the old
  limit) counts once. The threshold drops to the new limit.

A latency that stays at its new level becomes the long-term average, so a slower server costs a
few cuts, not all of the limit.
"""

from __future__ import annotations

import math
import time

import anyio

__all__ = ("AdaptiveLimit",)

_SHORT, _LONG = 0.1, 0.01
"""Weights of the latest answer in the short- and long-term averages."""
_WARM_UP = 20
"""Answers before the latency signal counts."""


class AdaptiveLimit:
    """An AIMD concurrency limit for one endpoint.

    Args:
        initial: The starting limit.
        minimum: The limit never drops below this.
        maximum: The limit never grows above this.
        adaptive: ``False`` keeps the limit at ``initial``.
        latency_tolerance: A short-term average latency above this multiple of the long-term
            one is congestion.
        latency_backoff: The factor a latency congestion signal multiplies the limit by.
        flat_tolerance: A short-term average latency within this multiple of the lowest one
            seen is flat (see the module docs).
    """

    def __init__(
        self,
        initial: int,
        *,
        minimum: int = 1,
        maximum: int = 4096,
        adaptive: bool = True,
        latency_tolerance: float = 2.0,
        latency_backoff: float = 0.8,
        flat_tolerance: float = 1.5,
    ) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError(
                f"need 1 <= minimum <= initial <= maximum, got {minimum}, {initial}, {maximum}"
            )
        if latency_tolerance <= 1.0:
            raise ValueError(f"latency_tolerance must be > 1, got {latency_tolerance}")
        if not 0.0 < latency_backoff < 1.0:
            raise ValueError(f"latency_backoff must be in (0, 1), got {latency_backoff}")
        if not 1.0 <= flat_tolerance < latency_tolerance:
            raise ValueError(
                f"flat_tolerance must be in [1, latency_tolerance), got {flat_tolerance}"
            )
        self.limiter = anyio.CapacityLimiter(initial)
        self.adaptive = adaptive
        self.minimum, self.maximum = minimum, maximum
        self.latency_tolerance = latency_tolerance
        self.latency_backoff = latency_backoff
        self.flat_tolerance = flat_tolerance
        self._limit = float(initial)
        self._threshold = float(maximum)
        """Slow start below this limit, additive increase above."""
        self._short = 0.0
        self._long = 0.0
        self._floor = math.inf
        """The lowest latency seen."""
        self._seen = 0
        self._last_cut = -math.inf
        self.cuts = 0
        """How often the limit was cut (for logs and tests)."""

    @property
    def limit(self) -> int:
        """The current limit (requests in flight at once)."""
        return int(self.limiter.total_tokens)

    @property
    def latency_s(self) -> tuple[float, float]:
        """The short- and long-term average latency, in seconds (0 before the first answer)."""
        return self._short, self._long

    def _set(self, value: float) -> None:
        self._limit = min(float(self.maximum), max(float(self.minimum), value))
        tokens = max(self.minimum, int(self._limit))
        if tokens != self.limiter.total_tokens:
            self.limiter.total_tokens = tokens

    def _cut(self, factor: float, started: float) -> None:
        """Multiply the limit by ``factor``, unless the request was sent before the last cut."""
        if started < self._last_cut:
            return
        self._last_cut = time.monotonic()
        self.cuts += 1
        self._set(self._limit * factor)
        self._threshold = max(float(self.minimum), self._limit)

    def saturated(self) -> bool:
        """Whether the limit is what holds requests back now (every slot in use)."""
        return self.limiter.borrowed_tokens >= self.limiter.total_tokens

    def on_success(self, started: float, *, saturated: bool, waiting: int = 0) -> None:
        """An answer came back to a request sent at ``started`` (``time.monotonic()``);
        ``saturated``: every slot of the limit is in use; ``waiting``: requests waiting for a
        slot (what a jump may let in)."""
        if not self.adaptive:
            return
        latency_s = time.monotonic() - started
        self._seen += 1
        self._floor = min(self._floor, latency_s)
        if self._seen == 1:
            self._short = self._long = latency_s
        else:
            self._short += _SHORT * (latency_s - self._short)
            self._long += _LONG * (latency_s - self._long)
        warm = self._seen > _WARM_UP
        if warm and self._short > self.latency_tolerance * self._long:
            self._cut(self.latency_backoff, started)
        elif saturated:
            if self._limit >= self._threshold:
                step = 1.0 / self._limit
            elif warm and self._short <= self.flat_tolerance * self._floor:
                step = max(1.0, min(self._limit, float(waiting)))
            else:
                step = 1.0
            self._set(self._limit + step)

    def on_overload(self, started: float) -> None:
        """The server said it is overloaded (429, 503) to a request sent at ``started``:
        halve the limit."""
        if self.adaptive:
            self._cut(0.5, started)
