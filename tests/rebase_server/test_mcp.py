"""``rebase-agent mcp``: the solve tool through the official mcp client, in process, over a
real stdio subprocess, and over streamable HTTP on a real localhost port."""

from __future__ import annotations

import pathlib
import sys
from typing import Any

import anyio
import pytest

mcp = pytest.importorskip("mcp")

from mcp import Client, StdioServerParameters  # noqa: E402

from rebase_agent import RebaseConfig  # noqa: E402
from rebase_agent.testing import ScriptedProvider, ScriptedScorer  # noqa: E402
from rebase_server import RouteConfig, ServerConfig  # noqa: E402
from rebase_server.mcp_server import RebaseMCP, create_mcp_server  # noqa: E402
from tests.rebase_server.helpers import TOKEN, serving_app  # noqa: E402

pytestmark = pytest.mark.anyio

ROOT = pathlib.Path(__file__).resolve().parents[2]


def mcp_config(**kwargs: Any) -> ServerConfig:
    route = RouteConfig(backend="scripted", search=RebaseConfig(budget=4), max_budget=8)
    other = RouteConfig(
        backend="scripted", strategy="sampling", max_budget=4, search=RebaseConfig(budget=2)
    )
    return ServerConfig(routes={"rebase-test": route, "sampling": other}, **kwargs)


async def test_solve_reports_progress_and_returns_structured_content() -> None:
    provider, scorer = ScriptedProvider(depth=3, answers=["42"]), ScriptedScorer()
    server = create_mcp_server(mcp_config(), backends={"rebase-test": (provider, scorer)})
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    async with Client(server) as client:
        tools = (await client.list_tools()).tools
        result = await client.call_tool(
            "solve", {"problem": "What is 6 * 7?", "budget": 8}, progress_callback=on_progress
        )
    (tool,) = tools
    assert tool.name == "solve" and tool.output_schema is not None
    assert set(tool.input_schema["properties"]) == {"problem", "budget", "strategy", "route"}
    assert tool.input_schema["required"] == ["problem"]
    assert not result.is_error
    data = result.structured_content
    assert data is not None
    assert data["answer"] == "42" and data["budget"] == 8 and data["route"] == "rebase-test"
    assert data["votes"][0]["answer"] == "42" and data["votes"][0]["count"] == 8
    assert [s["text"].split(":")[0] for s in data["path"]] == ["Step 1", "Step 2", "Step 3"]
    assert all(0 <= s["score"] <= 1 for s in data["path"])
    assert data["usage"]["provider_requests"] > 0 and data["usage"]["total_tokens"] > 0
    assert data["test_double"] is True  # the route names the scripted double
    assert data["tree_shape"] == [1, 8, 8, 8]
    assert provider.requests[0].problem == "What is 6 * 7?" and provider.requests[0].n == 8
    # One progress report per depth, increasing.
    assert [r[0] for r in reports] == [1.0, 2.0, 3.0]
    assert reports[0][1] == 25.0 and reports[-1][2] is not None
    assert "depth 3" in reports[-1][2] and "8 finished" in reports[-1][2]


async def test_solve_on_another_route_and_strategy_and_errors() -> None:
    server = create_mcp_server(mcp_config())
    async with Client(server) as client:
        other = await client.call_tool("solve", {"problem": "What is 6 * 7?", "route": "sampling"})
        beam = await client.call_tool("solve", {"problem": "6 * 7?", "strategy": "beam"})
        unknown = await client.call_tool("solve", {"problem": "hi", "route": "gpt-17"})
        over = await client.call_tool("solve", {"problem": "hi", "budget": 9})
        bad = await client.call_tool("solve", {"problem": "hi", "strategy": "magic"})
    assert other.structured_content is not None
    assert other.structured_content["strategy"] == "sampling"
    assert other.structured_content["test_double"] is True
    assert beam.structured_content is not None and beam.structured_content["strategy"] == "beam"
    for result, needle in ((unknown, "gpt-17"), (over, "limit 8"), (bad, "strategy")):
        assert result.is_error
        text = " ".join(getattr(block, "text", "") for block in result.content)
        assert needle in text


async def test_cancelling_the_call_cancels_the_search() -> None:
    gate = anyio.Event()
    provider = ScriptedProvider(gate=gate)
    server = create_mcp_server(mcp_config(), backends={"rebase-test": (provider, ScriptedScorer())})
    async with Client(server) as client:
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                await client.call_tool("solve", {"problem": "hi"})

            tg.start_soon(call)
            with anyio.fail_after(5):
                while provider.in_flight == 0:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        with anyio.fail_after(5):
            while provider.in_flight:
                await anyio.sleep(0.01)
        assert provider.cancelled == 1
        # The server still answers.
        gate.set()
        again = await client.call_tool("solve", {"problem": "What is 6 * 7?"})
    assert not again.is_error


def write_config(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "mcp.toml"
    path.write_text(
        '[routes.rebase-test]\nbackend = "scripted"\nmax_budget = 8\n'
        'options = { answers = "42,41" }\nsearch = { budget = 4 }\n'
    )
    return path


async def test_over_a_real_stdio_subprocess(tmp_path: pathlib.Path) -> None:
    config_path = write_config(tmp_path)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "rebase_agent", "mcp", "--config", str(config_path)],
        cwd=str(ROOT),
    )
    reports: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append(progress)

    with anyio.fail_after(60):
        async with Client(params) as client:
            result = await client.call_tool(
                "solve", {"problem": "What is 6 * 7?"}, progress_callback=on_progress
            )
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["answer"] in {"42", "41"}
    assert result.structured_content["test_double"] is True
    assert reports == [1.0, 2.0, 3.0]


async def test_over_streamable_http_with_the_bearer_token() -> None:
    config = mcp_config(api_key=TOKEN)
    server = RebaseMCP(config)
    async with serving_app(server.http_app()) as base:
        import httpx2

        async with httpx2.AsyncClient() as raw:
            refused = await raw.post(f"{base}/mcp", json={}, headers={"Accept": "*/*"})
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            from mcp.client.streamable_http import streamable_http_client

            async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
                result = await client.call_tool("solve", {"problem": "What is 6 * 7?"})
    assert refused.status_code == 401
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["answer"] is not None
