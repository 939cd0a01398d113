"""The hot path's HTTP: JSON in and out over :class:`~.http1.HttpClient`, no models.

At about 2,000 requests in flight the ``openai`` client costs 5 to 9 ms of CPU per request
(request options as pydantic models, body transforms, ``httpx2``'s pool, URL, header and
response objects; bare ``httpx2`` alone costs 9.5 to 11.5 ms), and even on its aiohttp
transport with raw responses about 2 ms; a bare aiohttp session 0.55 to 0.77 ms;
:class:`~.http1.HttpClient` 0.22 to 0.25 ms (``benchmarks/http_overhead.py``). That is the
orchestrator's bottleneck, so generation and pooling requests go over :class:`JsonTransport`;
everything else (the probe, templates, tokenizers) keeps the ``openai`` client. Bodies are
encoded and answers decoded with ``orjson`` (a generation body: 0.5 against 10 µs to encode,
an answer of 8 choices: 10 against 32 µs to decode, on a loaded 2-core machine); an answer
``orjson`` refuses but Python's ``json`` reads (``NaN``, ``Infinity``, integers past 64 bits)
is read by ``json``.

Errors are raised as the ``openai`` client's exceptions (:class:`openai.BadRequestError`,
:class:`openai.RateLimitError`, :class:`openai.APIConnectionError`, ...), built only on the
error path, so retries, ``n`` detection and the key redaction in :mod:`.errors` treat both
paths alike. Where the direct path cannot go, :meth:`JsonTransport.post` uses the ``openai``
client: off asyncio (trio), and for an origin the environment sends through a proxy
(``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, unless ``NO_PROXY`` names it, as ``httpx``
reads them).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai
import orjson

from providers.openai_compat.http1 import HttpClient

__all__ = ("JsonTransport", "status_error")

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


def _proxied(url: str) -> bool:
    """Whether the environment sends ``url``'s origin through a proxy."""
    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    if parts.scheme not in proxies and "all" not in proxies:
        return False
    host = (parts.hostname or "").lower()
    port = f"{host}:{parts.port}" if parts.port else host
    for entry in proxies.get("no", "").replace(" ", "").lower().split(","):
        name = entry.lstrip(".")
        if entry == "*" or name in (host, port) or (name and host.endswith("." + name)):
            return False
    return True


_NON_STR_KEYS = orjson.OPT_NON_STR_KEYS
"""Integer keys (``logit_bias``) become strings, as :func:`json.dumps` writes them."""


def _decode(content: bytes) -> Any:
    """A 2xx answer's JSON (:class:`json.JSONDecodeError` when it is not JSON or not UTF-8)."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        pass  # NaN, Infinity, big integers: JSON as Python reads it, which orjson refuses
    try:
        return json.loads(content)
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(f"answer is not UTF-8 ({exc.reason})", "", 0) from None


class JsonTransport:
    """POSTs JSON to one server and returns the decoded answer.

    Args:
        client: The endpoint's ``openai`` client: its key and default headers are sent, and it
            serves the request where the direct path cannot (see the module docs).
    """

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self._client = client
        headers = {**client.default_headers, **client.auth_headers}
        sent = {
            k: v
            for k, v in headers.items()
            if isinstance(v, str) and not k.lower().startswith("x-stainless")
        }
        sent["Content-Type"] = "application/json"
        self._http = HttpClient(sent)
        self._direct: dict[str, bool] = {}
        self.direct = True
        """``False`` sends every request through the ``openai`` client (for comparisons)."""

    @property
    def connections_opened(self) -> int:
        """Connections the direct path opened so far."""
        return self._http.connections_opened

    def _goes_direct(self, url: str) -> bool:
        if not self.direct or _asyncio_loop() is None:
            return False
        origin = url.split("/", 3)[:3]
        key = "/".join(origin)
        found = self._direct.get(key)
        if found is None:
            found = self._direct[key] = not _proxied(key)
        return found

    async def post(self, url: str, body: dict[str, Any]) -> Any:
        """POST ``body`` as JSON to ``url``; the decoded JSON answer.

        Raises:
            openai.APIStatusError: An error status (the subclass the ``openai`` client raises).
            openai.APIConnectionError: The server could not be reached, dropped the connection
                or sent something that is not HTTP.
            json.JSONDecodeError: A 2xx answer that is not JSON.
        """
        if not self._goes_direct(url):
            return await self._client.post(url, cast_to=object, body=body)
        try:
            response = await self._http.post(url, orjson.dumps(body, option=_NON_STR_KEYS))
        except OSError as exc:  # refused, reset, TLS, HttpProtocolError
            raise openai.APIConnectionError(request=httpx2.Request("POST", url)) from exc
        if response.status >= 400:
            raise status_error(url, response.status, response.headers, response.content)
        return _decode(response.content)

    async def aclose(self) -> None:
        """Close the direct path's connections (a later request opens new ones)."""
        await self._http.aclose()
