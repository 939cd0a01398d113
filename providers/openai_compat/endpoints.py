"""Replicas of one model behind OpenAI-compatible base URLs, used least-loaded first.

Each :class:`Endpoint` owns an ``AsyncOpenAI`` client (its own retries off), a
:class:`anyio.CapacityLimiter` and what was learnt about the server (whether it honours ``n``).
:class:`EndpointPool` sends each attempt to the endpoint with the fewest requests in flight,
bounds it with a deadline, maps errors and retries transient failures.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar

import anyio
import openai

from providers.openai_compat.errors import EndpointConnectionError, map_api_error, redact
from providers.openai_compat.retry import RetryPolicy, call_with_retries

if TYPE_CHECKING:
    from providers.openai_compat.probe import Tokenizer

__all__ = ("Endpoint", "EndpointPool", "UsesEndpoints")

T = TypeVar("T")
logger = logging.getLogger("providers.openai_compat")
_PLACEHOLDER_KEY = "EMPTY"


class Endpoint:
    """One base URL: its client, its concurrency limit and its learnt capabilities."""

    def __init__(
        self,
        base_url: str,
        client: openai.AsyncOpenAI,
        *,
        max_concurrency: int,
        supports_n: bool | None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.limiter = anyio.CapacityLimiter(max_concurrency)
        self.supports_n = supports_n
        """``True``/``False`` once known (or set); ``None`` until the first request with n > 1."""
        self.n_explicit = supports_n is not None
        self.in_flight = 0
        self.down_until = 0.0
        """``time.monotonic()`` before which the endpoint is avoided, after a connection error."""
        """Requests sent to this endpoint and not yet answered (waiting ones included)."""
        self.requests = 0
        """Attempts sent to this endpoint so far."""
        self.usage_one_choice: bool | None = None
        """Whether ``usage.completion_tokens`` counts only one of ``n`` choices (probed)."""
        self.tokenizer: Tokenizer | None = None
        """How this server tokenizes text, where the probe found an endpoint for it."""
        self.tokenizer_failed = False
        """Tokenizing failed once: estimate from now on."""

    @property
    def root_url(self) -> str:
        """The server root: the base URL without a trailing ``/v1``."""
        return self.base_url.removesuffix("/v1")

    def mark_without_n(self, reason: str) -> None:
        """Remember that this endpoint does not honour ``n`` (unless the user said it does)."""
        if self.n_explicit:
            logger.warning("%s: %s although supports_n=True was set", self.base_url, reason)
            return
        if self.supports_n is not False:
            logger.info("%s: %s; sending n single requests from now on", self.base_url, reason)
        self.supports_n = False


class _ClosesOnExit:
    """An async context manager that calls ``aclose()`` on exit."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class EndpointPool(_ClosesOnExit):
    """Replicas serving one model, with retries, deadlines and least-loaded dispatch.

    Args:
        base_urls: One base URL or several (``http://host:8000/v1``), all serving the same model.
        api_key: The key sent as ``Authorization: Bearer``; ``None`` reads ``OPENAI_API_KEY``
            and falls back to a placeholder for local servers.
        max_concurrency: Requests in flight at once, per endpoint.
        timeout_s: Deadline of one attempt, in seconds.
        retry: The retry policy (defaults: 5 attempts, backoff from 0.5 s).
        supports_n: Whether the servers honour ``n``; ``None`` detects it per endpoint.
        cooldown_s: How long an endpoint that refused a connection is skipped while another
            one is up.

    Use it as an async context manager, or call :meth:`aclose`, to close the connections.
    """

    def __init__(
        self,
        base_urls: str | Sequence[str],
        *,
        api_key: str | None = None,
        max_concurrency: int = 16,
        timeout_s: float = 300.0,
        retry: RetryPolicy | None = None,
        supports_n: bool | None = None,
        cooldown_s: float = 5.0,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("EndpointPool needs at least one base URL")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._api_key = key or _PLACEHOLDER_KEY
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.endpoints = tuple(
            Endpoint(
                url,
                openai.AsyncOpenAI(
                    base_url=url, api_key=self._api_key, max_retries=0, timeout=timeout_s
                ),
                max_concurrency=max_concurrency,
                supports_n=supports_n,
            )
            for url in urls
        )
        self._turn = 0
        self.cooldown_s = cooldown_s

    def __repr__(self) -> str:
        urls = ", ".join(e.base_url for e in self.endpoints)
        return f"EndpointPool([{urls}])"

    def _pick(self) -> Endpoint:
        """The endpoint with the fewest requests in flight, skipping those cooling down after a
        connection error (unless all are); ties go round-robin."""
        count = len(self.endpoints)
        start = self._turn
        self._turn = (self._turn + 1) % count
        order = [self.endpoints[(start + i) % count] for i in range(count)]
        now = time.monotonic()
        up = [e for e in order if e.down_until <= now] or order
        return min(up, key=lambda e: e.in_flight)

    async def call(
        self,
        op: Callable[[Endpoint], Awaitable[T]],
        *,
        path: str,
        model: str,
        at_root: bool = False,
    ) -> T:
        """Run ``op`` on the least-loaded endpoint, retrying transient failures.

        Each attempt picks an endpoint afresh, waits for its limiter, and runs under the
        deadline. Errors of the openai client become rebase-agent exceptions that name the
        URL and the model.

        Args:
            op: One request against the given endpoint (raises openai client errors).
            path: The path requested, for messages (``"/completions"``).
            model: The model requested, for messages.
            at_root: ``path`` is relative to the server root, not to the base URL.

        Returns:
            What ``op`` returned.

        Raises:
            ProviderHTTPError: An error status that retrying did not cure.
            ProviderTimeout: The last attempt ran past ``timeout_s``.
            ProviderError: Any other failure.
        """

        async def attempt() -> T:
            endpoint = self._pick()
            url = (endpoint.root_url if at_root else endpoint.base_url) + path
            endpoint.in_flight += 1
            try:
                async with endpoint.limiter:
                    endpoint.requests += 1
                    with anyio.fail_after(self.timeout_s):
                        return await op(endpoint)
            except (openai.OpenAIError, TimeoutError, json.JSONDecodeError) as exc:
                failure: Exception = exc
            finally:
                endpoint.in_flight -= 1
            # Raised outside the except block, so a server text that quotes the key is not
            # even kept as __context__.
            mapped = map_api_error(
                failure, where=f"POST {url} (model {model!r})", secret=self._api_key
            )
            if isinstance(mapped, EndpointConnectionError):
                endpoint.down_until = time.monotonic() + self.cooldown_s
            leaks = redact(str(failure), self._api_key) != str(failure)
            raise mapped from (None if leaks else failure)

        describe = f"POST {path} (model {model!r})"
        return await call_with_retries(attempt, self.retry, describe=describe)

    async def aclose(self) -> None:
        """Close every client's connections."""
        for endpoint in self.endpoints:
            await endpoint.client.close()


class UsesEndpoints(_ClosesOnExit):
    """Mixin for a provider or scorer that owns an :class:`EndpointPool` as ``endpoints``.

    Gives it :meth:`aclose` and the async context manager that calls it.
    """

    endpoints: EndpointPool

    async def aclose(self) -> None:
        """Close the connections of every endpoint."""
        await self.endpoints.aclose()
