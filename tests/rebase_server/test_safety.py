"""Safe by default: keys from the environment, closed beyond loopback, JSON bodies only, no 500
for any body, one-line config errors, a default timeout, quiet disconnects, bounded memory."""

from __future__ import annotations

import logging
import pathlib

import anyio
import httpx2
import pytest
from click.testing import CliRunner

from rebase_agent import RebaseConfig, StepRequest
from rebase_agent.backends import load_backend
from rebase_agent.testing import FunctionProvider, ScriptedProvider, ScriptedScorer
from rebase_server import ConfigError, RouteConfig, ServerConfig, create_app, load_config
from rebase_server.cli import serve
from rebase_server.config import check_exposure
from tests.rebase_server.helpers import TOKEN, config, serving

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {**AUTH, "Content-Type": "application/json"}


def scripted_route() -> dict[str, RouteConfig]:
    return {"r": RouteConfig(backend="scripted", search=RebaseConfig(budget=2), max_budget=4)}


async def test_the_key_from_the_environment_is_honoured_without_a_config_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REBASE_API_KEY", "from-the-env")
    async with serving(ServerConfig(routes=scripted_route())) as base:
        async with httpx2.AsyncClient(base_url=base) as raw:
            without = await raw.get("/v1/models")
            wrong = await raw.get("/v1/models", headers={"Authorization": "Bearer nope"})
            right = await raw.get("/v1/models", headers={"Authorization": "Bearer from-the-env"})
    assert without.status_code == 401 and wrong.status_code == 401
    assert "from-the-env" not in without.text + wrong.text
    assert right.status_code == 200


def test_binding_beyond_loopback_without_a_key_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REBASE_API_KEY", raising=False)
    for host in ("127.0.0.1", "localhost", "::1"):
        check_exposure(host, None, insecure=False)
    check_exposure("0.0.0.0", "a-key", insecure=False)
    check_exposure("0.0.0.0", None, insecure=True)
    with pytest.raises(ConfigError, match="--insecure"):
        check_exposure("0.0.0.0", None, insecure=False)
    result = CliRunner().invoke(serve, ["--host", "0.0.0.0"])
    assert result.exit_code != 0
    assert "--insecure" in result.output and "Traceback" not in result.output


def test_bad_configs_fail_with_one_line_naming_the_field(tmp_path: pathlib.Path) -> None:
    cases = {
        "typo.toml": "max_concurent_searches = 2\n",
        "budget.toml": '[routes.r]\nbackend = "scripted"\nsearch = { budget = "many" }\n',
        "backend.toml": '[routes.r]\nbackend = "no-such-backend"\n',
        "syntax.toml": "routes = [\n",
        "port.yaml": "port: 99999\n",
    }
    expected = {
        "typo.toml": "max_concurent_searches",
        "budget.toml": "routes.r.search.budget",
        "backend.toml": "routes.r.backend",
        "syntax.toml": "not valid TOML",
        "port.yaml": "port",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        result = CliRunner().invoke(serve, ["--config", str(path)])
        assert result.exit_code == 1, (name, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and expected[name] in lines[0], (name, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
    missing = CliRunner().invoke(serve, ["--config", str(tmp_path / "absent.toml")])
    assert missing.exit_code == 1 and len(missing.output.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match=r"^.*typo.toml: max_concurent_searches"):
        load_config(tmp_path / "typo.toml")


BAD_BODIES: list[tuple[str, bytes, dict[str, str], int]] = [
    (
        "text/plain (cross-site form)",
        b'{"model": "rebase-test"}',
        {"Content-Type": "text/plain"},
        415,
    ),
    ("no content type", b"{}", {}, 415),
    ("not JSON", b"{nope", {}, 400),
    ("an array", b"[1, 2]", {}, 400),
    ("nested 50k deep", b"[" * 50_000 + b"]" * 50_000, {}, 400),
    (
        "nested 100 deep in a field",
        b'{"model": "rebase-test", "messages": [], "metadata": '
        + b'{"a": ' * 100
        + b"1"
        + b"}" * 100
        + b"}",
        {},
        400,
    ),
    (
        "a lone surrogate",
        b'{"model": "rebase-test", "messages": [{"role": "user", "content": "\\ud800"}]}',
        {},
        400,
    ),
    (
        "a lone surrogate in a key",
        b'{"model": "rebase-test", "\\udfff": 1, "messages": []}',
        {},
        400,
    ),
    (
        "a non-string text part",
        b'{"model": "rebase-test", "messages": [{"role": "user", '
        b'"content": [{"type": "text", "text": 5}]}]}',
        {},
        400,
    ),
    (
        "an image part",
        b'{"model": "rebase-test", "messages": [{"role": "user", '
        b'"content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}',
        {},
        400,
    ),
    ("a number for the model", b'{"model": 5, "messages": []}', {}, 400),
    ("a string for messages", b'{"model": "rebase-test", "messages": "hi"}', {}, 400),
    (
        "an unknown role",
        b'{"model": "rebase-test", "messages": [{"role": "wizard", "content": "x"}]}',
        {},
        400,
    ),
    ("invalid UTF-8", b'{"model": "\xff"}', {}, 400),
    ("a huge integer", b'{"model": "rebase-test", "n": ' + b"9" * 5000 + b"}", {}, 400),
    (
        "an empty problem",
        b'{"model": "rebase-test", "messages": [{"role": "user", "content": "  "}]}',
        {},
        400,
    ),
]


@pytest.mark.parametrize(
    ("what", "body", "headers", "status"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
async def test_no_body_gets_a_500(
    what: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    headers = {**AUTH, "Content-Type": "application/json", **headers}
    if what == "no content type":
        del headers["Content-Type"]
    async with serving(config()) as base:
        async with httpx2.AsyncClient(base_url=base) as raw:
            replies = [
                await raw.post(path, content=body, headers=headers)
                for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses")
            ]
    for reply in replies:
        assert reply.status_code == status, (what, reply.text)
        error = reply.json()["error"]
        assert error["message"] and set(error) == {"message", "type", "param", "code"}


async def test_a_hung_backend_is_cut_off_by_the_default_request_timeout() -> None:
    assert ServerConfig().request_timeout_s == 300.0
    gate = anyio.Event()  # never set: every request hangs
    backends = {"rebase-test": (ScriptedProvider(gate=gate), ScriptedScorer())}
    app = create_app(config(), backends=backends)
    assert app.state.server.searches["rebase-test"].config.timeout_s == 300.0
    async with serving(config(request_timeout_s=0.3), backends) as base:
        async with httpx2.AsyncClient(base_url=base, timeout=10) as raw:
            body = {"model": "rebase-test", "messages": [{"role": "user", "content": "hi"}]}
            reply = await raw.post("/v1/chat/completions", json=body, headers=AUTH)
    assert reply.status_code == 504 and reply.json()["error"]["code"] == "search_timeout"


async def test_a_client_leaving_mid_stream_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    # The first depth answers at once; the second hangs, so the client leaves mid-search and
    # the search reports its cancelled round while the stream is being torn down.
    gate = anyio.Event()
    cancelled = 0

    async def policy(request: StepRequest) -> list[str]:
        nonlocal cancelled
        if request.depth >= 1:
            try:
                await gate.wait()
            except anyio.get_cancelled_exc_class():
                cancelled += 1
                raise
        return [f"Step {request.depth + 1}: think.\n\n"] * request.n

    provider = FunctionProvider(policy)
    backends = {"rebase-test": (provider, ScriptedScorer())}
    body = {
        "model": "rebase-test",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    caplog.set_level(logging.INFO)
    async with serving(config(), backends) as base:
        for _ in range(5):
            async with httpx2.AsyncClient(base_url=base, timeout=10) as raw:
                async with raw.stream(
                    "POST", "/v1/chat/completions", json=body, headers=AUTH
                ) as response:
                    async for line in response.aiter_lines():
                        if line.startswith(": depth 1"):
                            break  # leave: the client closes the connection
            with anyio.fail_after(5):
                while provider.in_flight:
                    await anyio.sleep(0.01)
        await anyio.sleep(0.2)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert cancelled >= 5  # every search was cancelled while waiting at depth 1


def test_the_scripted_double_keeps_a_bounded_record() -> None:
    provider, scorer = load_backend("scripted")()
    assert isinstance(provider, ScriptedProvider) and isinstance(scorer, ScriptedScorer)
    assert provider.max_recorded == 1000 and scorer.max_recorded == 1000
    small = ScriptedProvider(max_recorded=3)

    async def run() -> None:
        for depth in range(10):
            await small.generate(StepRequest(problem="p", steps=("s",) * depth))

    anyio.run(run)
    assert [r.depth for r in small.requests] == [7, 8, 9]
