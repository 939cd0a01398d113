"""The hot path's HTTP/1.1 client (:mod:`providers.openai_compat.http1`) against a localhost
server that answers with scripted bytes: framing, keep-alive, stale connections, bad answers."""

from __future__ import annotations

import gzip
import json
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import openai
import pytest
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.tls import TLSListener

from providers.openai_compat import OpenAIProvider
from providers.openai_compat.http1 import HttpClient, HttpProtocolError
from providers.openai_compat.transport import JsonTransport
from rebase_agent import StepRequest
from tests.loops import ASYNCIO_LOOPS

pytestmark = pytest.mark.anyio


@pytest.fixture(params=ASYNCIO_LOOPS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """Every test on asyncio's loop and on uvloop's (the commands' loop where installed)."""
    return request.param


Script = Callable[[int, bytes], bytes | None]
"""(request number on this connection, request bytes) -> answer bytes; ``None``: hang up."""


async def _read_request(stream: SocketStream, buffer: bytearray) -> bytes | None:
    while b"\r\n\r\n" not in buffer:
        try:
            buffer += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return None
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end]).lower()
    length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
    while len(buffer) < end + length:
        buffer += await stream.receive()
    request = bytes(buffer[: end + length])
    del buffer[: end + length]
    return request


@asynccontextmanager
async def raw_server(
    script: Script, *, close_after_answer: bool = False, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    """Yields (URL, requests seen, connections accepted so far as a one-item list); over TLS
    (``https``) with ``tls``, the server's context."""
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = tcp.extra(SocketAttribute.local_port)
    listener: Any = tcp if tls is None else TLSListener(tcp, tls, standard_compatible=False)
    seen: list[bytes] = []
    accepted = [0]

    async def handler(stream: Any) -> None:
        accepted[0] += 1
        buffer = bytearray()
        async with stream:
            for number in range(1000):
                request = await _read_request(stream, buffer)
                if request is None:
                    return
                seen.append(request)
                answer = script(number, request)
                if answer is None:
                    return
                await stream.send(answer)
                if close_after_answer:
                    return

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        scheme = "http" if tls is None else "https"
        yield f"{scheme}://127.0.0.1:{port}/v1/completions", seen, accepted
        tg.cancel_scope.cancel()


def ok(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (head.encode(), len(body), body)


async def test_sends_the_headers_and_body_and_reuses_the_connection() -> None:
    async with raw_server(lambda n, r: ok(b'{"n": %d}' % n)) as (url, seen, accepted):
        client = HttpClient({"Authorization": "Bearer k", "Content-Type": "application/json"})
        first = await client.post(url, b'{"a": 1}')
        second = await client.post(url, b"{}")
        await client.aclose()
    assert (first.status, json.loads(first.content), json.loads(second.content)) == (
        200,
        {"n": 0},
        {"n": 1},
    )
    assert accepted[0] == 1 and client.connections_opened == 1
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/completions HTTP/1.1" and body == b'{"a": 1}'
    port = url.split(":")[2].split("/")[0]
    assert set(lines[1:]) == {
        f"Host: 127.0.0.1:{port}".encode(),
        b"Authorization: Bearer k",
        b"Content-Type: application/json",
        b"Content-Length: 8",
    }


@pytest.fixture(scope="module")
def certificate_authority() -> Any:
    """A throwaway CA and a certificate of 127.0.0.1 it signed (``trustme``)."""
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


def _server_context(ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def test_https_verifies_the_server_and_keeps_the_connection(
    certificate_authority: Any,
) -> None:
    trusted = ssl.create_default_context()
    certificate_authority.configure_trust(trusted)
    server = _server_context(certificate_authority)
    async with raw_server(lambda n, r: ok(b'{"n": %d}' % n), tls=server) as (url, seen, accepted):
        assert url.startswith("https://")
        client = HttpClient({"Content-Type": "application/json"}, ssl_context=trusted)
        answers = [await client.post(url, b'{"a": %d}' % i) for i in range(3)]
        await client.aclose()
    assert [json.loads(a.content) for a in answers] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert accepted[0] == 1 and client.connections_opened == 1
    assert seen[2].endswith(b'{"a": 2}')


async def test_https_refuses_a_server_it_cannot_verify(certificate_authority: Any) -> None:
    """The default context checks certificates: an unknown CA is an error, not a silent
    downgrade; the provider's transport reports it as a connection error with that cause."""
    server = _server_context(certificate_authority)
    async with raw_server(lambda n, r: ok(b"{}"), tls=server) as (url, seen, accepted):
        client = HttpClient({})
        with pytest.raises(ssl.SSLCertVerificationError):
            await client.post(url, b"{}")
        await client.aclose()
        api = openai.AsyncOpenAI(base_url=url.removesuffix("/completions"), api_key="k")
        transport = JsonTransport(api)
        with pytest.raises(openai.APIConnectionError) as info:
            await transport.post(url, {"prompt": "x"})
        await transport.aclose()
        await api.close()
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert seen == [] and accepted[0] == 0  # no connection got past the handshake


async def test_https_trusts_the_ca_named_by_ssl_cert_file(
    certificate_authority: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A private CA reaches the direct path as it reaches OpenSSL: ``SSL_CERT_FILE``."""
    bundle = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    server = _server_context(certificate_authority)
    async with raw_server(lambda n, r: ok(b'{"ok": true}'), tls=server) as (url, seen, _):
        api = openai.AsyncOpenAI(base_url=url.removesuffix("/completions"), api_key="k")
        transport = JsonTransport(api)
        assert await transport.post(url, {"prompt": "x"}) == {"ok": True}
        await transport.aclose()
        await api.close()
    assert json.loads(seen[0].partition(b"\r\n\r\n")[2]) == {"prompt": "x"}


async def test_reads_chunked_gzip_and_interim_answers() -> None:
    payload = gzip.compress(b'{"choices": []}')
    chunked = b"".join(
        b"%x;ext=1\r\n%s\r\n" % (len(part), part) for part in (payload[:5], payload[5:])
    )
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
        + chunked
        + b"0\r\nX-Trailer: t\r\n\r\n"
    )
    async with raw_server(lambda n, r: answer) as (url, _, accepted):
        client = HttpClient({})
        got = [await client.post(url, b"{}") for _ in range(2)]
        await client.aclose()
    assert [json.loads(r.content) for r in got] == [{"choices": []}] * 2
    assert got[0].headers["content-encoding"] == "gzip" and accepted[0] == 1


async def test_an_answer_framed_by_the_end_of_the_connection_is_read_whole() -> None:
    answer = b'HTTP/1.0 200 OK\r\n\r\n{"done": true}'
    async with raw_server(lambda n, r: answer, close_after_answer=True) as (url, _, accepted):
        client = HttpClient({})
        with anyio.fail_after(5):
            got = [await client.post(url, b"{}") for _ in range(2)]
        await client.aclose()
    assert [json.loads(r.content) for r in got] == [{"done": True}] * 2
    assert accepted[0] == 2  # no length: that connection could not be reused


async def test_connection_close_is_honoured() -> None:
    async with raw_server(lambda n, r: ok(b"{}", "Connection: close")) as (url, _, accepted):
        client = HttpClient({})
        for _ in range(3):
            assert (await client.post(url, b"{}")).status == 200
        await client.aclose()
    assert accepted[0] == 3


async def test_an_idle_connection_the_server_closed_is_replaced_once() -> None:
    # The server answers once per connection, then hangs up at the next request (as a server
    # that timed the idle connection out at that moment).
    def script(n: int, request: bytes) -> bytes | None:
        return ok(b'{"ok": 1}') if n == 0 else None

    async with raw_server(script) as (url, seen, accepted):
        client = HttpClient({})
        for _ in range(3):
            assert json.loads((await client.post(url, b"{}")).content) == {"ok": 1}
        await client.aclose()
    assert accepted[0] == 3 and len(seen) == 5  # two sends found a stale connection


async def test_a_fresh_connection_hanging_up_is_an_error() -> None:
    async with raw_server(lambda n, r: None) as (url, _, _accepted):
        client = HttpClient({})
        with pytest.raises(HttpProtocolError, match="closed"):
            await client.post(url, b"{}")
        await client.aclose()


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"SMTP ready\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "transfer coding"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n{}", "br"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n", "over 1000 bytes"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000, "too long"),
    ],
)
async def test_a_bad_answer_is_a_protocol_error(answer: bytes, match: str) -> None:
    async with raw_server(lambda n, r: answer) as (url, _, _accepted):
        client = HttpClient({}, max_body_bytes=1000)
        with anyio.fail_after(5), pytest.raises(HttpProtocolError, match=match):
            await client.post(url, b"{}")
        await client.aclose()


async def test_a_cancelled_request_closes_its_connection() -> None:
    answered = anyio.Event()

    def script(n: int, request: bytes) -> bytes | None:
        answered.set()
        return ok(b"{}") if b"fast" in request else b""  # "slow": no answer yet

    async with raw_server(script) as (url, _, accepted):
        client = HttpClient({})
        with anyio.move_on_after(0.3):
            await client.post(url, b'{"slow": 1}')
        assert (await client.post(url, b'{"fast": 1}')).status == 200
        await client.aclose()
    assert accepted[0] == 2  # the cancelled request's connection was not reused


def test_headers_that_http_cannot_carry_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="'Authorization'") as caught:
        HttpClient({"Authorization": "Bearer sk-secret\r\nX-Injected: 1"})
    assert "sk-secret" not in str(caught.value)
    with pytest.raises(ValueError, match="not an http"):
        HttpClient({})._origin("ftp://host/v1")


async def test_transport_errors_are_the_openai_clients() -> None:
    client = openai.AsyncOpenAI(base_url="http://127.0.0.1:1/v1", api_key="k", max_retries=0)
    transport = JsonTransport(client)
    with pytest.raises(openai.APIConnectionError):
        await transport.post("http://127.0.0.1:1/v1/completions", {})  # refused
    status = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: %d\r\n\r\n%s"
    body = b'{"error": {"message": "slow down"}}'
    async with raw_server(lambda n, r: status % (len(body), body)) as (url, _, _accepted):
        with pytest.raises(openai.RateLimitError, match="slow down") as caught:
            await transport.post(url, {})
    assert caught.value.response.headers["retry-after"] == "3"
    async with raw_server(lambda n, r: ok(b"\xff\xfe not json")) as (url, _, _accepted):
        with pytest.raises(json.JSONDecodeError):
            await transport.post(url, {})
    async with raw_server(lambda n, r: b"garbage\r\n\r\n") as (url, _, _accepted):
        with pytest.raises(openai.APIConnectionError):
            await transport.post(url, {})
    await transport.aclose()
    await client.close()


async def test_the_transport_writes_json_and_reads_what_pythons_json_reads() -> None:
    client = openai.AsyncOpenAI(base_url="http://127.0.0.1:1/v1", api_key="k", max_retries=0)
    transport = JsonTransport(client)
    answers = [
        b'{"text": "caf\xc3\xa9 \\u00e9", "n": 18446744073709551616}',  # past 64 bits
        b'{"logprob": -Infinity, "other": NaN}',  # what Python's json.dumps writes
    ]
    async with raw_server(lambda n, r: ok(answers[n])) as (url, seen, _accepted):
        sent = {"prompt": "2 × 3 = ", "logit_bias": {128: -100}, "stop": ("\n",)}
        first = await transport.post(url, sent)
        second = await transport.post(url, {})
    assert first == {"text": "café é", "n": 2**64}
    assert second["logprob"] == float("-inf") and second["other"] != second["other"]  # NaN
    body = seen[0].partition(b"\r\n\r\n")[2]
    assert json.loads(body) == {"prompt": "2 × 3 = ", "logit_bias": {"128": -100}, "stop": ["\n"]}
    await transport.aclose()
    await client.close()


async def test_a_proxied_origin_goes_through_the_openai_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = json.dumps({"choices": [{"index": 0, "text": "4", "finish_reason": "stop"}]})
    answer = ok(body.encode(), "Content-Type: application/json")
    async with raw_server(lambda n, r: answer) as (url, seen, _accepted):
        base = url.removesuffix("/completions")
        # The proxy is the server itself: a proxied request carries the absolute URL.
        monkeypatch.setenv("HTTP_PROXY", base.removesuffix("/v1"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with OpenAIProvider("m", base) as provider:
            got = await provider.generate(StepRequest(problem="p"))
    assert got[0].text.startswith("4")
    assert seen[0].startswith(b"POST http://127.0.0.1:")  # sent to the proxy, absolute form


async def test_no_proxy_keeps_an_origin_on_the_direct_path(monkeypatch: pytest.MonkeyPatch) -> None:
    body = json.dumps({"choices": [{"index": 0, "text": "4", "finish_reason": "stop"}]})
    async with raw_server(lambda n, r: ok(body.encode())) as (url, seen, _accepted):
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")  # nothing listens there
        monkeypatch.setenv("NO_PROXY", "example.com, 127.0.0.1")
        async with OpenAIProvider("m", url.removesuffix("/completions")) as provider:
            got = await provider.generate(StepRequest(problem="p"))
            opened = provider.endpoints.endpoints[0].transport.connections_opened
    assert got[0].text.startswith("4") and seen[0].startswith(b"POST /v1/completions ")
    assert opened == 1
