"""Retries with exponential backoff and jitter, honouring ``Retry-After``.

One wrapper around tenacity, driven by :class:`RetryPolicy`. It retries only transient failures
(429, 5xx, timeouts, connection errors); 400, 401, 403 and 404 fail at once. The openai client's
own retries are off (``max_retries=0``) so the two never multiply.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from pydantic import BaseModel, ConfigDict, Field
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential_jitter

from providers.openai_compat.errors import EndpointHTTPError, is_retryable

__all__ = ("RetryPolicy", "call_with_retries")

T = TypeVar("T")
logger = logging.getLogger("providers.openai_compat")


class RetryPolicy(BaseModel):
    """How often and how patiently a failed request is sent again.

    The wait before retry ``k`` (from 0) is ``min(max_backoff_s, initial_backoff_s * 2**k +
    uniform(0, jitter_s))``, or the server's ``Retry-After`` (capped at ``max_retry_after_s``)
    when it sent one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=5, ge=1)
    """Attempts in all, the first included; 1 turns retries off."""
    initial_backoff_s: float = Field(default=0.5, ge=0.0)
    max_backoff_s: float = Field(default=30.0, ge=0.0)
    jitter_s: float = Field(default=0.5, ge=0.0)
    max_retry_after_s: float = Field(default=60.0, ge=0.0)
    """Longest ``Retry-After`` honoured; a longer one is cut to this."""


class _Wait(wait_base):
    """Exponential backoff with jitter, replaced by the server's ``Retry-After`` when present."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._backoff = wait_exponential_jitter(
            multiplier=policy.initial_backoff_s,
            max=policy.max_backoff_s,
            jitter=policy.jitter_s,
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, EndpointHTTPError) and exc.retry_after is not None:
            return min(exc.retry_after, self._policy.max_retry_after_s)
        return float(self._backoff(retry_state))


def _log_retry(describe: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "%s: attempt %d failed (%s); retrying in %.2fs",
            describe,
            state.attempt_number,
            exc,
            wait,
        )

    return before_sleep


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]], policy: RetryPolicy, *, describe: str
) -> T:
    """Run ``attempt`` until it succeeds, fails for good, or runs out of attempts.

    Args:
        attempt: One try; raises rebase-agent exceptions (see :func:`~.errors.map_api_error`).
        policy: The retry policy.
        describe: What is being retried, for the log (never holds the API key).

    Returns:
        What the first successful attempt returned.

    Raises:
        ProviderError: The last attempt's error, unchanged.
    """
    # The first attempt runs outside tenacity (about 30 us of CPU a call), which only takes
    # over after a retryable failure: it gets that failure back as its own first attempt, so
    # the waits, the log and the attempt count are the same as if it had run it.
    try:
        return await attempt()
    except Exception as exc:
        if policy.max_attempts == 1 or not is_retryable(exc):
            raise
        first: Exception | None = exc

    async def replay() -> T:
        nonlocal first
        if first is not None:
            failure, first = first, None
            raise failure
        return await attempt()

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=_Wait(policy),
        retry=retry_if_exception(is_retryable),
        before_sleep=_log_retry(describe),
        sleep=anyio.sleep,
        reraise=True,
    )
    async for try_ in retrying:
        with try_:
            return await replay()
    raise AssertionError("unreachable: tenacity either returns or re-raises")
