"""The hot path's HTTP: one ``aiohttp`` session per endpoint, JSON in and out, no models.

The ``openai`` client costs about 2 ms of CPU per request even on its aiohttp transport with
raw responses (request options as pydantic models, body transforms, ``httpx2`` URL, header and
response objects over the aiohttp ones), against about 0.5 ms for bare aiohttp on the same
request pattern (``benchmarks/http_overhead.py``). At thousands of requests in flight that is
the orchestrator's bottleneck, so generation and pooling requests go over :class:`JsonTransport`
instead; everything else (the probe, templates, tokenizers) keeps the ``openai`` client.

Errors are raised as the ``openai`` client's exceptions (:class:`openai.BadRequestError`,
:class:`openai.RateLimitError`, :class:`openai.APIConnectionError`, ...), built only on the
error path, so retries, ``n`` detection and the key redaction in :mod:`.errors` treat both
paths alike. Off asyncio (trio), where aiohttp cannot run, :meth:`JsonTransport.post` uses the
``openai`` client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx2
import openai

__all__ = ("JsonTransport", "status_error")

try:
    import aiohttp
    import aiohttp.helpers
    import yarl
except ImportError:  # pragma: no cover - the openai[aiohttp] extra is a dependency
    aiohttp = None  # type: ignore[assignment]

_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


def status_error(
    url: str, status: int, headers: dict[str, str], content: bytes
) -> openai.APIStatusError:
    """The ``openai`` client's exception for an error status, as it would have raised it."""
    try:
        body: object = json.loads(content)
    except ValueError:
        body = content.decode("utf-8", "replace")
    error = body.get("error", body) if isinstance(body, dict) else body
    message = f"Error code: {status} - {body}"
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message = f"Error code: {status} - {error['message']}"
    response = httpx2.Response(
        status, headers=headers, content=content, request=httpx2.Request("POST", url)
    )
    cls = _STATUS_ERRORS.get(status)
    if cls is None:
        cls = openai.InternalServerError if status >= 500 else openai.APIStatusError
    return cls(message, response=response, body=error if isinstance(body, dict) else body)


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop; ``None`` under another event loop (trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class JsonTransport:
    """POSTs JSON to one server and returns the decoded answer.

    Args:
        client: The endpoint's ``openai`` client: its key and default headers are sent, and it
            serves the request where aiohttp cannot (no asyncio loop, or no aiohttp).
    """

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self._client = client
        headers = {**client.default_headers, **client.auth_headers}
        self._headers = {
            k: v
            for k, v in headers.items()
            if isinstance(v, str) and not k.lower().startswith("x-stainless")
        }
        self._headers["Content-Type"] = "application/json"
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxies: dict[str, tuple[Any, Any]] = {}
        self.uses_aiohttp = aiohttp is not None

    def _session_now(self, loop: asyncio.AbstractEventLoop) -> Any:
        """This loop's session (made on first use; a session cannot outlive its loop)."""
        if self._session is None or self._loop is not loop or self._session.closed:
            if self._session is not None and self._loop is not loop:
                self._session.detach()  # its loop is gone: nothing left to close there
            connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=False)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=None),
                trust_env=False,  # True costs two thread hops per request (netrc, proxies)
                json_serialize=json.dumps,
            )
            self._loop = loop
        return self._session

    def _proxy(self, url: str) -> tuple[Any, Any]:
        """The proxy the environment names for ``url``'s host (``HTTP_PROXY``, ``NO_PROXY``,
        as httpx honours them), looked up once per host, not per request."""
        origin = url.split("/", 3)[:3]
        key = "/".join(origin)
        if key not in self._proxies:
            found: tuple[Any, Any] = (None, None)
            with contextlib.suppress(LookupError):
                found = aiohttp.helpers.get_env_proxy_for_url(yarl.URL(key))
            self._proxies[key] = found
        return self._proxies[key]

    async def post(self, url: str, body: dict[str, Any]) -> Any:
        """POST ``body`` as JSON to ``url``; the decoded JSON answer.

        Raises:
            openai.APIStatusError: An error status (the subclass the ``openai`` client raises).
            openai.APIConnectionError: The server could not be reached or dropped the
                connection.
            json.JSONDecodeError: A 2xx answer that is not JSON.
        """
        loop = _asyncio_loop()
        if not self.uses_aiohttp or loop is None:
            return await self._client.post(url, cast_to=object, body=body)
        session = self._session_now(loop)
        proxy, proxy_auth = self._proxy(url)
        data = json.dumps(body).encode()
        try:
            async with session.post(url, data=data, proxy=proxy, proxy_auth=proxy_auth) as response:
                content = await response.read()
                status = response.status
                if status >= 400:
                    headers = {k: v for k, v in response.headers.items()}
                    raise status_error(url, status, headers, content)
        except aiohttp.ClientError as exc:
            raise openai.APIConnectionError(request=httpx2.Request("POST", url)) from exc
        return json.loads(content)

    async def aclose(self) -> None:
        """Close the session's connections (a later request opens a new one)."""
        session, self._session = self._session, None
        if session is None:
            return
        if self._loop is _asyncio_loop():
            await session.close()
        else:
            session.detach()
