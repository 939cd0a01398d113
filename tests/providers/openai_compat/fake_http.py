"""The HTTP layer of the fake OpenAI-compatible server: HTTP/1.1 with ``h11`` over an anyio TCP
listener on a free localhost port, run inside the caller's task group.

It hands each request to an app (:class:`App`: ``handle(path, headers, body) -> reply`` and
``hung_up(path)``) and notices when a client hangs up while its request runs: the request is
cancelled and reported to the app, so tests can check that cancellation reached the server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, Protocol

import anyio
import h11
from anyio import CancelScope
from anyio.abc import SocketAttribute, SocketStream

__all__ = ("App", "AppReply", "serve")


class AppReply(Protocol):
    """An answer: status, body (JSON, or a raw string), headers."""

    status: int
    body: Any
    headers: dict[str, str]
    raw: bool


class App(Protocol):
    """What :func:`serve` runs."""

    async def handle(self, path: str, headers: dict[str, str], body: Any) -> AppReply:
        """Answer one request."""
        ...

    def hung_up(self, path: str) -> None:
        """Note a request whose client went away before the answer."""
        ...


async def _read_request(
    conn: h11.Connection, stream: SocketStream
) -> tuple[h11.Request, bytes] | None:
    request: h11.Request | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return None
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, body
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def _watch_hangup(stream: SocketStream, gone: anyio.Event, scope: CancelScope) -> None:
    """Wait for the client to hang up while its request runs; then cancel the request."""
    with suppress(anyio.EndOfStream, anyio.BrokenResourceError):
        await stream.receive()
    gone.set()
    scope.cancel()


async def _connection(app: App, stream: SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    async with stream:
        while True:
            received = await _read_request(conn, stream)
            if received is None:
                return
            request, raw = received
            path = request.target.decode().split("?")[0]
            headers = {k.decode().lower(): v.decode() for k, v in request.headers}
            body = json.loads(raw) if raw else None
            reply: AppReply | None = None
            gone = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_watch_hangup, stream, gone, tg.cancel_scope)
                reply = await app.handle(path, headers, body)
                tg.cancel_scope.cancel()
            if gone.is_set():
                app.hung_up(path)
            if gone.is_set() or reply is None:
                return
            payload = str(reply.body).encode() if reply.raw else json.dumps(reply.body).encode()
            head = [("content-type", "application/json"), ("content-length", str(len(payload)))]
            head += list(reply.headers.items())
            reason = {
                200: b"OK",
                400: b"Bad Request",
                401: b"Unauthorized",
                429: b"Too Many Requests",
            }.get(reply.status, b"Error")
            out = conn.send(h11.Response(status_code=reply.status, headers=head, reason=reason))
            out += conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage())
            try:
                await stream.send(out)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()


@asynccontextmanager
async def serve(app: App) -> AsyncIterator[str]:
    """Run ``app`` on a free port of 127.0.0.1; yields the base URL (``.../v1``)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)

    async def handler(stream: SocketStream) -> None:
        await _connection(app, stream)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        try:
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            tg.cancel_scope.cancel()
