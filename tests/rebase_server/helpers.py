"""A server on a real localhost port (bound to port 0, the port read back), and a fake policy
endpoint that records what the server forwards to it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from rebase_agent import Provider, RebaseConfig, Scorer
from rebase_server import RouteConfig, ServerConfig, create_app

__all__ = ("TOKEN", "ToolEndpoint", "config", "serving", "serving_app")

TOKEN = "s3cret-token-for-tests"


@asynccontextmanager
async def serving_app(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1, port 0; yield its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


@asynccontextmanager
async def serving(
    config: ServerConfig, backends: Mapping[str, tuple[Provider, Scorer]] | None = None
) -> AsyncIterator[str]:
    async with serving_app(create_app(config, backends=backends)) as base:
        yield base


def config(**kwargs: Any) -> ServerConfig:
    route_fields = kwargs.pop("route", {})
    route = RouteConfig(
        backend="scripted", search=RebaseConfig(budget=4), max_budget=8, **route_fields
    )
    return ServerConfig(api_key=TOKEN, routes={"rebase-test": route}, **kwargs)


TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


class ToolEndpoint:
    """A policy endpoint that answers every chat turn with a call of ``get_weather`` (or, once a
    tool result is in the conversation, with the text ``It is sunny.``), and records bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[Mapping[str, str]] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    def message(self, body: dict[str, Any]) -> dict[str, Any]:
        if any(m.get("role") == "tool" for m in body["messages"]):
            return {"role": "assistant", "content": "It is sunny."}
        return {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        message = self.message(body)
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        base = {"id": "chatcmpl-up", "created": 0, "model": body["model"]}
        if not body.get("stream"):
            return JSONResponse(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
                }
            )

        async def events() -> AsyncIterator[str]:
            delta: dict[str, Any] = {"role": "assistant"}
            if message.get("tool_calls"):
                delta["tool_calls"] = [{"index": 0, **TOOL_CALL}]
            else:
                delta["content"] = message["content"]
            for choice in (
                {"index": 0, "delta": delta, "finish_reason": None},
                {"index": 0, "delta": {}, "finish_reason": finish},
            ):
                chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
