"""A minimal HTTP/1.1 client for the hot path: POST a body, read the answer, keep the connection.

Generation requests are small JSON POSTs to a few origins, thousands in flight. General clients
pay for what they do besides (aiohttp: request and response objects, multidict headers, cookie
jars, traces, timers per request; ``httpx``: a pool that scans its connections per request), so
:class:`HttpClient` does only this, over :class:`asyncio.Protocol` connections kept alive per
origin. Sending a REBASE search's requests to ``benchmarks/fake_openai_server.py`` (1,856 in
flight, new connections included) it costs 0.22 to 0.25 ms of CPU per request, against 0.55 to
0.77 ms for a bare ``aiohttp`` session and 9.5 to 11.5 ms for bare ``httpx2`` on the same
requests (``benchmarks/http_overhead.py``'s floors, a 2-core machine under load).

What it speaks:

- ``http`` and ``https`` (the default TLS context: certificates verified);
- a request: ``POST`` with ``Content-Length``, headers fixed per client;
- an answer: status line and headers (at most :data:`MAX_HEAD_BYTES`), then a body framed by
  ``Content-Length``, by the ``chunked`` transfer coding, or by the end of the connection;
  ``gzip`` and ``deflate`` content codings are decoded; ``1xx`` answers are skipped; a body over
  ``max_body_bytes`` is an error;
- keep-alive: a connection goes back to its origin's idle list after a whole answer unless the
  server said ``Connection: close`` (or spoke HTTP/1.0 without keep-alive). A request that
  finds its reused connection closed by the server before any byte of the answer (an idle
  connection the server timed out) is sent once more on a new connection.

A request that is cancelled (a deadline, a search that ends) closes its connection: its answer
could still arrive on it. Proxies are not spoken: :class:`~.transport.JsonTransport` sends
requests for a proxied origin through the ``openai`` client instead.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

__all__ = ("MAX_HEAD_BYTES", "HttpClient", "HttpProtocolError", "Response")

MAX_HEAD_BYTES = 64 * 1024
"""The longest status line and headers accepted."""


class HttpProtocolError(ConnectionError):
    """The server's answer was not HTTP/1.1 this client reads, or the connection ended early."""


class _StaleConnection(HttpProtocolError):
    """A reused connection ended before any byte of the answer."""


@dataclass(frozen=True, slots=True)
class Response:
    """A whole answer: status, headers (names lower-cased) and the decoded body."""

    status: int
    headers: dict[str, str]
    content: bytes


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    prefix: bytes
    """``Host`` and the client's headers, ready to follow the request line."""


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER, _UNTIL_EOF = range(6)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as bytes arrive."""

    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.keep_alive = True
        self._buffer = bytearray()
        self._state = _HEAD
        self._status = 0
        self._headers: dict[str, str] = {}
        self._remaining = 0
        self._body = bytearray()
        self._got_bytes = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.keep_alive = False
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        if self._state == _UNTIL_EOF:
            try:
                waiter.set_result(self._finish())
            except HttpProtocolError as error:
                waiter.set_exception(error)
        elif not self._got_bytes:
            waiter.set_exception(_StaleConnection("the server closed the connection"))
        else:
            waiter.set_exception(HttpProtocolError("the connection ended inside the answer"))

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self._fail(HttpProtocolError("bytes from the server with no request waiting"))
            return
        self._got_bytes = True
        self._buffer += data
        try:
            self._parse()
        except HttpProtocolError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        return False  # close; connection_lost settles the waiter

    # the client's side

    @property
    def usable(self) -> bool:
        """Open, idle and willing to take another request."""
        return self.transport is not None and self.keep_alive and not self.transport.is_closing()

    def send(self, data: bytes) -> asyncio.Future[Response]:
        """Write a request; the future settles with its answer."""
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        self._got_bytes = False
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        """Drop the connection now (an answer may still be on its way)."""
        self.keep_alive = False
        if self.transport is not None:
            self.transport.abort()

    # parsing

    def _fail(self, exc: HttpProtocolError) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def _parse(self) -> None:
        buffer = self._buffer
        while True:
            state = self._state
            if state == _HEAD:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_BYTES:
                        raise HttpProtocolError("the answer's headers are too long")
                    return
                if end > MAX_HEAD_BYTES:
                    raise HttpProtocolError("the answer's headers are too long")
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                self._read_head(head)
            elif state == _LENGTH:
                take = min(self._remaining, len(buffer))
                self._body += buffer[:take]
                del buffer[:take]
                self._remaining -= take
                if self._remaining:
                    return
                self._done()
                return
            elif state == _CHUNK_SIZE:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > 1024:
                        raise HttpProtocolError("a chunk size line is too long")
                    return
                line = bytes(buffer[:end]).split(b";", 1)[0].strip()
                del buffer[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise HttpProtocolError(f"a bad chunk size {line[:20]!r}") from None
                if size < 0:
                    raise HttpProtocolError(f"a bad chunk size {line[:20]!r}")
                self._check_size(len(self._body) + size)
                self._remaining = size
                self._state = _CHUNK_DATA if size else _TRAILER
            elif state == _CHUNK_DATA:
                if len(buffer) < self._remaining + 2:
                    return
                if buffer[self._remaining : self._remaining + 2] != b"\r\n":
                    raise HttpProtocolError("a chunk does not end with CRLF")
                self._body += buffer[: self._remaining]
                del buffer[: self._remaining + 2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILER:
                if buffer[:2] == b"\r\n":
                    del buffer[:2]
                    self._done()
                    return
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_BYTES:
                        raise HttpProtocolError("the answer's trailers are too long")
                    return
                del buffer[: end + 4]
                self._done()
                return
            else:  # _UNTIL_EOF
                self._body += buffer
                buffer.clear()
                self._check_size(len(self._body))
                return

    def _read_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HttpProtocolError(f"a bad header line: {line[:80]!r}")
            name = name.lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if 100 <= status < 200:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self._status, self._headers = status, headers
        connection = headers.get("connection", "").lower()
        if parts[0] == "HTTP/1.0":
            self.keep_alive = "keep-alive" in connection
        elif "close" in connection:
            self.keep_alive = False
        coding = headers.get("transfer-encoding", "").lower()
        if coding:
            if coding.rsplit(",", 1)[-1].strip() != "chunked":
                raise HttpProtocolError(f"transfer coding {coding!r} is not supported")
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit():
                raise HttpProtocolError(f"a bad Content-Length {length[:20]!r}")
            self._remaining = int(length)
            self._check_size(self._remaining)
            self._state = _LENGTH
        elif status in (204, 304):
            self._remaining = 0
            self._state = _LENGTH
        else:
            self.keep_alive = False
            self._state = _UNTIL_EOF

    def _check_size(self, size: int) -> None:
        if size > self.max_body_bytes:
            raise HttpProtocolError(f"the answer is over {self.max_body_bytes} bytes")

    def _finish(self) -> Response:
        body = bytes(self._body)
        coding = self._headers.get("content-encoding", "identity").lower()
        if coding in ("gzip", "x-gzip", "deflate"):
            wbits = 47 if coding != "deflate" else 15  # 47: gzip or zlib header, detected
            try:
                decoder = zlib.decompressobj(wbits)
                body = decoder.decompress(body, self.max_body_bytes + 1)
            except zlib.error as exc:
                raise HttpProtocolError(f"a bad {coding} body: {exc}") from None
            self._check_size(len(body))
        elif coding not in ("identity", ""):
            raise HttpProtocolError(f"content coding {coding!r} is not supported")
        response = Response(self._status, self._headers, body)
        self._state, self._status, self._headers = _HEAD, 0, {}
        self._body = bytearray()
        return response

    def _done(self) -> None:
        response = self._finish()  # before taking the waiter: a bad body fails it
        waiter, self.waiter = self.waiter, None
        if self._buffer:
            self.keep_alive = False  # bytes past the answer: the stream is out of step
        if waiter is not None and not waiter.done():
            waiter.set_result(response)


def _check_header(name: str, value: str) -> None:
    if not name or any(c in name for c in ":\r\n ") or any(c in value for c in "\r\n\0"):
        raise ValueError(f"header {name!r} has a name or value HTTP cannot carry")


class HttpClient:
    """POSTs bodies over keep-alive HTTP/1.1 connections, per origin (asyncio only).

    Args:
        headers: Sent with every request (``Host`` and ``Content-Length`` are added).
        max_body_bytes: The largest answer body accepted (after decoding).
        ssl_context: For ``https`` origins; default: :func:`ssl.create_default_context`.

    Raises:
        ValueError: A header name or value with a line break (or, for a name, ``:``).
    """

    def __init__(
        self,
        headers: Mapping[str, str],
        *,
        max_body_bytes: int = 256 * 1024 * 1024,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        for name, value in headers.items():
            _check_header(name, value)
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "host")
        self.max_body_bytes = max_body_bytes
        self._ssl = ssl_context
        self._origins: dict[str, tuple[_Origin, bytes]] = {}
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self.connections_opened = 0
        """Connections opened so far (for tests and benchmarks)."""

    def _origin(self, url: str) -> tuple[_Origin, bytes]:
        """The origin of ``url`` and its request target, parsed once per URL."""
        found = self._origins.get(url)
        if found is not None:
            return found
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        default = port == (443 if parts.scheme == "https" else 80)
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        authority = shown if default else f"{shown}:{port}"
        prefix = f"Host: {authority}\r\n{self._headers}".encode("latin-1")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if any(c in target for c in " \r\n"):
            raise ValueError(f"URL path {target!r} has a space or line break")
        found = (_Origin(parts.scheme, host, port, prefix), target.encode("ascii"))
        if len(self._origins) < 1024:
            self._origins[url] = found
        return found

    async def _connect(self, origin: _Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if origin.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        _, connection = await loop.create_connection(
            lambda: _Connection(self.max_body_bytes),
            origin.host,
            origin.port,
            ssl=tls,
            server_hostname=origin.host if tls is not None else None,
        )
        self.connections_opened += 1
        return connection

    async def post(self, url: str, body: bytes) -> Response:
        """POST ``body`` to ``url``; the whole answer, whatever its status.

        Raises:
            OSError: The connection could not be made (refused, unreachable, TLS).
            HttpProtocolError: The answer was malformed, too large, or cut off.
            ValueError: ``url`` is not an ``http``/``https`` URL.
        """
        origin, target = self._origin(url)
        head = b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (
            target,
            origin.prefix,
            len(body),
        )
        data = head + body
        idle = self._idle.get(origin)
        while True:
            connection = None
            while idle:
                candidate = idle.pop()
                if candidate.usable:
                    connection = candidate
                    break
            reused = connection is not None
            if connection is None:
                connection = await self._connect(origin)
            self._busy.add(connection)
            try:
                response = await connection.send(data)
            except _StaleConnection:
                if reused:
                    continue  # an idle connection the server had closed: once more, afresh
                raise
            except BaseException:
                connection.close()  # cancelled or failed: its stream is out of step
                raise
            finally:
                self._busy.discard(connection)
            if connection.usable:
                if idle is None:
                    idle = self._idle.setdefault(origin, [])
                idle.append(connection)
            else:
                connection.close()
            return response

    async def aclose(self) -> None:
        """Close every connection (a later request opens new ones)."""
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        for connection in list(self._busy):
            connection.close()
        self._busy.clear()
