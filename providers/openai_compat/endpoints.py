"""Replicas of one model behind OpenAI-compatible base URLs, routed cache-aware.

Each :class:`Endpoint` owns an ``AsyncOpenAI`` client (its own retries off), a
:class:`~.transport.JsonTransport` for the hot path, an adaptive concurrency limit
(:class:`~.adaptive.AdaptiveLimit`) and what was learnt about the server (whether it honours
``n``). :class:`EndpointPool` routes each attempt, bounds it with a deadline, maps errors and
retries transient failures.

Routing (``routing="cache_aware"``, the default): a request that names an affinity key (the
provider sends the problem, so a problem's whole subtree shares one key) goes to the replica that
key hashes to (rendezvous hashing over the replicas that are up, so a replica going down moves
only its own keys), and the replicas' prefix caches keep the problem's tree. When that replica
runs ahead of the least-loaded one by more than ``balance_abs_threshold`` requests and by a
factor ``balance_rel_threshold`` (as sgl-router's ``cache_aware`` policy does), or when its
concurrency limit is full while the least-loaded one has room, the request goes to the
least-loaded one instead. ``routing="least_loaded"`` ignores the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

import anyio
import openai

from providers.openai_compat.adaptive import AdaptiveLimit
from providers.openai_compat.errors import (
    EndpointConnectionError,
    EndpointHTTPError,
    map_api_error,
    redact,
)
from providers.openai_compat.open_files import connection_budget, open_file_limit
from providers.openai_compat.retry import RetryPolicy, call_with_retries
from providers.openai_compat.slots import slots_of
from providers.openai_compat.transport import JsonTransport
from rebase_agent.concurrency import holding

if TYPE_CHECKING:
    from providers.openai_compat.probe import Tokenizer

__all__ = ("DEFAULT_CONCURRENCY", "Endpoint", "EndpointPool", "Routing", "UsesEndpoints")

T = TypeVar("T")
logger = logging.getLogger("providers.openai_compat")
_PLACEHOLDER_KEY = "EMPTY"
Routing = Literal["cache_aware", "least_loaded"]
DEFAULT_CONCURRENCY = 256
"""Where an adaptive per-endpoint limit starts: above one search's widest fan-out at budget
64 (one request per node), so one search is never held back by it; it grows from there
(doubling every round trip, or faster while latency stays flat, see
:class:`~.adaptive.AdaptiveLimit`) up to ``max_limit``, and backs off on 429/503 and rising
latency."""
_OVERLOAD_STATUS = frozenset({429, 503})
_PLENTY = 4096
"""Requests in flight per endpoint that no search needs more of (the default ``max_limit``)."""


def _weight(key: str, url: str) -> int:
    """Rendezvous-hash weight of ``url`` for ``key`` (stable across processes)."""
    digest = hashlib.blake2b(f"{url}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _within_open_files(
    endpoints: int, max_concurrency: int | None, max_limit: int
) -> tuple[int | None, int]:
    """``max_concurrency`` and ``max_limit``, lowered to the connections the open-file limit
    leaves room for on each of ``endpoints`` (with a warning when it lowers one)."""
    wanted = max_concurrency or max_limit
    fits = connection_budget(wanted * endpoints) // endpoints
    if fits >= wanted:
        return max_concurrency, max_limit
    fits = max(1, fits)
    name = "max_concurrency" if max_concurrency is not None else "max_limit"
    # Below the default max_limit, the cap may hold a search back: a warning. Above it (a
    # limit set huge to mean "none"), it is only said.
    logger.log(
        logging.WARNING if fits < _PLENTY else logging.INFO,
        "%s=%d per endpoint (%d endpoint(s)) needs more connections than this process may "
        "open (RLIMIT_NOFILE %s, already at its hard limit); requests in flight are capped at "
        "%d per endpoint: raise the hard limit (ulimit -Hn) to go higher",
        name,
        wanted,
        endpoints,
        open_file_limit(),
        fits,
    )
    if max_concurrency is not None:
        return fits, max_limit
    return None, fits


class Endpoint:
    """One base URL: its client, its concurrency limit and its learnt capabilities."""

    def __init__(
        self,
        base_url: str,
        client: openai.AsyncOpenAI,
        *,
        max_concurrency: int | None,
        supports_n: bool | None,
        max_limit: int = 4096,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.transport = JsonTransport(client)
        """POSTs JSON without the client's models (generation and pooling requests)."""
        self.limit = AdaptiveLimit(
            max_concurrency or min(DEFAULT_CONCURRENCY, max_limit),
            maximum=max(max_limit, max_concurrency or 1),
            adaptive=max_concurrency is None,
        )
        """Requests in flight at once: fixed where ``max_concurrency`` was given, else AIMD."""
        self.limiter = self.limit.limiter
        self.supports_n = supports_n
        """``True``/``False`` once known (or set); ``None`` until the first request with n > 1."""
        self.n_explicit = supports_n is not None
        self.max_n: int | None = None
        """The most choices one request may ask for, where the server said (llama-server
        allows as many as it has slots); ``None``: no cap known."""
        self.in_flight = 0
        """Requests sent to this endpoint and not yet answered (waiting ones included)."""
        self.down_until = 0.0
        """``time.monotonic()`` before which the endpoint is avoided, after a connection error."""
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

    async def post(self, path: str, body: dict[str, Any], *, at_root: bool = False) -> Any:
        """POST ``body`` to ``path`` (under the base URL, or the root) and decode the answer.

        Raises the ``openai`` client's errors (see :class:`~.transport.JsonTransport`).
        """
        url = (self.root_url if at_root else self.base_url) + path
        return await self.transport.post(url, body)

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
    """Replicas serving one model, with retries, deadlines and cache-aware routing.

    Args:
        base_urls: One base URL or several (``http://host:8000/v1``), all serving the same model.
        api_key: The key sent as ``Authorization: Bearer``; ``None`` reads ``OPENAI_API_KEY``
            and falls back to a placeholder for local servers.
        max_concurrency: Requests in flight at once, per endpoint, fixed; ``None`` (the
            default): adaptive, from :data:`DEFAULT_CONCURRENCY` up to ``max_limit``, backing
            off on 429/503 and on rising latency (:class:`~.adaptive.AdaptiveLimit`).
        timeout_s: Deadline of one attempt, in seconds.
        retry: The retry policy (defaults: 5 attempts, backoff from 0.5 s).
        supports_n: Whether the servers honour ``n``; ``None`` detects it per endpoint.
        cooldown_s: How long an endpoint that refused a connection is skipped while another
            one is up.
        routing: ``"cache_aware"`` (prefix affinity with a load escape, see the module docs)
            or ``"least_loaded"``.
        balance_abs_threshold: Cache-aware routing leaves a request's replica when it has this
            many more requests in flight than the least-loaded one...
        balance_rel_threshold: ...and more than this multiple of its load. (sgl-router's 32
            and 1.5 are below one search's fan-out of 64: measured on the fake server, they
            sent 659 of 4,947 requests away and lost most of the cache gain.)
        max_limit: The most an adaptive limit grows to, per endpoint.

    Each request in flight holds a connection, so the limits stay within the process's
    open-file limit: the pool raises the soft ``RLIMIT_NOFILE`` to the hard one (see
    :mod:`~.open_files`), and where even that leaves too little room for ``max_concurrency``
    (or ``max_limit``) on every endpoint, it lowers them to what fits, with a warning.

    Use it as an async context manager, or call :meth:`aclose`, to close the connections.
    """

    def __init__(
        self,
        base_urls: str | Sequence[str],
        *,
        api_key: str | None = None,
        max_concurrency: int | None = None,
        timeout_s: float = 300.0,
        retry: RetryPolicy | None = None,
        supports_n: bool | None = None,
        cooldown_s: float = 5.0,
        routing: Routing = "cache_aware",
        balance_abs_threshold: int = 512,
        balance_rel_threshold: float = 2.0,
        max_limit: int = _PLENTY,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("EndpointPool needs at least one base URL")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if routing not in ("cache_aware", "least_loaded"):
            raise ValueError(f"routing must be 'cache_aware' or 'least_loaded', got {routing!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if max_limit < 1:
            raise ValueError(f"max_limit must be >= 1, got {max_limit}")
        max_concurrency, max_limit = _within_open_files(len(urls), max_concurrency, max_limit)
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
                max_limit=max_limit,
            )
            for url in urls
        )
        self._turn = 0
        self.cooldown_s = cooldown_s
        self.routing: Routing = routing
        self.balance_abs_threshold = balance_abs_threshold
        self.balance_rel_threshold = balance_rel_threshold
        self.escapes = 0
        """Requests cache-aware routing sent away from their replica, for load."""

    def __repr__(self) -> str:
        urls = ", ".join(e.base_url for e in self.endpoints)
        return f"EndpointPool([{urls}])"

    def _pick(self, affinity: str | None = None, avoid: Endpoint | None = None) -> Endpoint:
        """The endpoint for the next attempt, skipping those cooling down after a connection
        error (unless all are) and ``avoid`` (the one a retried attempt failed on, unless it
        is the only one): the key's replica (see the module docs), else the one with the
        fewest requests in flight; ties go round-robin."""
        count = len(self.endpoints)
        if count == 1:
            return self.endpoints[0]
        start = self._turn
        self._turn = (self._turn + 1) % count
        order = [self.endpoints[(start + i) % count] for i in range(count)]
        now = time.monotonic()
        up = [e for e in order if e.down_until <= now] or order
        up = [e for e in up if e is not avoid] or up
        least = min(up, key=lambda e: e.in_flight)
        if affinity is None or self.routing == "least_loaded":
            return least
        home = max(up, key=lambda e: _weight(affinity, e.base_url))
        if home is least:
            return home
        ahead = home.in_flight - least.in_flight
        imbalanced = (
            ahead > self.balance_abs_threshold
            and home.in_flight > least.in_flight * self.balance_rel_threshold
        )
        # Or: the home replica's limit is full (the request would wait here) while another
        # has room.
        full = home.in_flight >= home.limit.limit and least.in_flight < least.limit.limit
        if imbalanced or full:
            self.escapes += 1
            return least
        return home

    async def call(
        self,
        op: Callable[[Endpoint], Awaitable[T]],
        *,
        path: str,
        model: str,
        at_root: bool = False,
        affinity: str | None = None,
        choices: Callable[[Endpoint], int] | None = None,
    ) -> T:
        """Run ``op`` on an endpoint, retrying transient failures.

        Each attempt picks an endpoint afresh (by ``affinity``, see the module docs), waits
        for its limit, and for the server's slots where the probe found how many it has (see
        :mod:`~.slots`), then runs under the deadline; its latency and overload answers (429,
        503) move an adaptive limit. Errors of the openai client become rebase-agent
        exceptions that name the URL and the model.

        Args:
            op: One request against the given endpoint (raises openai client errors).
            path: The path requested, for messages (``"/completions"``).
            model: The model requested, for messages.
            at_root: ``path`` is relative to the server root, not to the base URL.
            affinity: What the request's prefix belongs to (the problem): requests with the
                same key go to the same replica while its load allows.
            choices: How many choices ``op`` asks the endpoint for (the slots it takes on a
                server with slots); default 1.

        Returns:
            What ``op`` returned.

        Raises:
            ProviderHTTPError: An error status that retrying did not cure.
            ProviderTimeout: The last attempt ran past ``timeout_s``.
            ProviderError: Any other failure.
        """

        failed_on: list[Endpoint] = []

        async def attempt() -> T:
            endpoint = self._pick(affinity, failed_on[-1] if failed_on else None)
            limit = endpoint.limit
            endpoint.in_flight += 1
            started = time.monotonic()  # again once a slot is free
            slots = slots_of(endpoint.root_url)
            try:
                async with holding(limit.limiter):
                    taken = 0
                    if slots is not None:  # taken before the deadline starts
                        taken = max(1, min(choices(endpoint) if choices else 1, slots.total))
                        await slots.acquire(taken)
                    try:
                        endpoint.requests += 1
                        started = time.monotonic()
                        # A bare cancel scope: anyio.fail_after's generator wrapper costs a few
                        # microseconds more per request.
                        deadline = anyio.current_time() + self.timeout_s
                        with anyio.CancelScope(deadline=deadline) as dl:
                            result = await op(endpoint)
                    finally:
                        if slots is not None:
                            slots.release(taken)
                    if dl.cancelled_caught:
                        raise TimeoutError
                    waiting = endpoint.in_flight - int(limit.limiter.borrowed_tokens)
                    limit.on_success(started, saturated=limit.saturated(), waiting=waiting)
                    return result
            except (openai.OpenAIError, TimeoutError, json.JSONDecodeError) as exc:
                failure: Exception = exc
            finally:
                endpoint.in_flight -= 1
            failed_on.append(endpoint)
            url = (endpoint.root_url if at_root else endpoint.base_url) + path
            # Raised outside the except block, so a server text that quotes the key is not
            # even kept as __context__.
            mapped = map_api_error(
                failure, where=f"POST {url} (model {model!r})", secret=self._api_key
            )
            if isinstance(mapped, EndpointConnectionError):
                endpoint.down_until = time.monotonic() + self.cooldown_s
            elif isinstance(mapped, EndpointHTTPError) and mapped.status_code in _OVERLOAD_STATUS:
                limit.on_overload(started)
            leaks = redact(str(failure), self._api_key) != str(failure)
            raise mapped from (None if leaks else failure)

        describe = f"POST {path} (model {model!r})"
        return await call_with_retries(attempt, self.retry, describe=describe)

    async def aclose(self) -> None:
        """Close every client's connections."""
        for endpoint in self.endpoints:
            await endpoint.transport.aclose()
            await endpoint.client.close()


class UsesEndpoints(_ClosesOnExit):
    """Mixin for a provider or scorer that owns an :class:`EndpointPool` as ``endpoints``.

    Gives it :meth:`aclose` and the async context manager that calls it.
    """

    endpoints: EndpointPool

    async def aclose(self) -> None:
        """Close the connections of every endpoint."""
        await self.endpoints.aclose()
