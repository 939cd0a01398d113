"""Turn openai client errors into rebase-agent's exceptions.

Every message names the request (method, URL, model) and never the API key: server text is
redacted before it is quoted, because some servers echo the key back (OpenAI's 401 does, in part).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import openai

from rebase_agent.exceptions import ProviderError, ProviderHTTPError, ProviderTimeout

__all__ = (
    "EndpointConnectionError",
    "EndpointHTTPError",
    "is_retryable",
    "map_api_error",
    "redact",
    "retry_after_seconds",
)

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
_MAX_QUOTED = 500


class EndpointHTTPError(ProviderHTTPError):
    """An error status from an endpoint, with the server's ``Retry-After`` when it sent one."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)
        self.retry_after = retry_after


class EndpointConnectionError(ProviderError):
    """The endpoint could not be reached, or dropped the connection."""


def redact(text: str, secret: str | None) -> str:
    """Replace ``secret`` in ``text``, and its last 8 characters, which some servers quote."""
    if not secret or secret == "EMPTY":
        return text
    text = text.replace(secret, "***")
    tail = secret[-8:]
    if len(secret) > 12 and tail in text:
        text = text.replace(tail, "***")
    return text


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Read ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date); ``None`` if absent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if (ms := lowered.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_message(body: object, fallback: str) -> str:
    """The human-readable part of an error body (OpenAI, vLLM, FastAPI and llama-server shapes)."""
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping):
            for key in ("message", "detail", "msg"):
                if isinstance(error.get(key), str):
                    return str(error[key])
        if isinstance(error, str):
            return error
        if "detail" in body:
            return str(body["detail"])
    if isinstance(body, str) and body:
        return body
    return fallback


def map_api_error(exc: Exception, *, where: str, secret: str | None) -> ProviderError:
    """Map an openai client error (or an anyio deadline) to a :class:`ProviderError`.

    Args:
        exc: The error raised by the client, or ``TimeoutError`` from a deadline.
        where: The request, e.g. ``"POST http://host/v1/completions (model 'm')"``.
        secret: The API key, removed from any text quoted from the server.

    Returns:
        The exception to raise: :class:`EndpointHTTPError` for an error status,
        :class:`ProviderTimeout`, or :class:`EndpointConnectionError`.
    """
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return ProviderTimeout(f"{where}: request timed out")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        quoted = redact(_server_message(exc.body, exc.message), secret)[:_MAX_QUOTED]
        return EndpointHTTPError(
            f"{where}: HTTP {status}: {quoted}",
            status_code=status,
            retryable=status in _RETRYABLE_STATUS or status >= 500,
            retry_after=retry_after_seconds(exc.response.headers),
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = ""
        if cause is not None:  # "OSError: [Errno 24] Too many open files" says what to do
            text = redact(str(cause), secret)[:_MAX_QUOTED]
            detail = f" ({type(cause).__name__}: {text})" if text else f" ({type(cause).__name__})"
        return EndpointConnectionError(f"{where}: connection failed{detail}")
    message = redact(str(exc), secret)[:_MAX_QUOTED]
    return ProviderError(f"{where}: {type(exc).__name__}: {message}")


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed attempt may succeed when sent again (429, 5xx, timeouts, connections)."""
    if isinstance(exc, ProviderHTTPError):
        return exc.retryable
    return isinstance(exc, ProviderTimeout | EndpointConnectionError)
