"""REBASE behind an OpenAI-compatible HTTP API, for agent frameworks.

``POST /v1/chat/completions`` and ``POST /v1/completions`` run a search on the route (model)
the request names; the last user message (or the prompt) is the problem and the chosen solution
is the reply. ``GET /v1/models`` lists the routes (with their backend and strategy, and
``test_double: true`` for a route on a test double), ``GET /health`` answers without auth.

Every search runs in the request's own task. A client that disconnects cancels its search and
every provider and scorer request the search had in flight. ``stream: true`` sends SSE comments
with the progress of each depth (and a keep-alive comment while a depth is slow), then the answer
as chunks, then ``data: [DONE]``.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
from anyio import CancelScope
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from rebase_agent import (
    DepthStats,
    Provider,
    RebaseConfig,
    RebaseSearch,
    Scorer,
    SearchFailed,
    SearchResult,
    SearchTimeout,
)
from rebase_agent.backends import aclose, is_double, load_backend, search_defaults
from rebase_agent.scorers import with_check
from rebase_server import openai_api as api
from rebase_server.config import RouteConfig, ServerConfig

__all__ = ("ApiError", "create_app")

Kind = Literal["chat", "text"]


class ApiError(Exception):
    """An error answered in OpenAI's JSON shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = api.error_body(message, type=type, param=param, code=code)
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


class _Server:
    def __init__(
        self, config: ServerConfig, backends: Mapping[str, tuple[Provider, Scorer]] | None
    ) -> None:
        self.config = config
        self.token = config.bearer_token()
        self.routes = config.routes
        self.searches: dict[str, RebaseSearch] = {}
        for name, route in config.routes.items():
            if backends is not None and name in backends:
                provider, scorer = backends[name]
            else:
                provider, scorer = load_backend(route.backend)(**route.options)
                scorer = with_check(scorer, route.check)
            # The backend's recommended search fields, under the route's own (as solve, eval).
            search_config = RebaseConfig(
                **(search_defaults(provider) | route.search.model_dump(exclude_unset=True))
            )
            if config.request_timeout_s is not None:
                search_config = search_config.model_copy(
                    update={"timeout_s": config.request_timeout_s}
                )
            self.searches[name] = RebaseSearch(
                provider, scorer, search_config, strategy=route.strategy
            )
        self.searches_running = anyio.CapacityLimiter(config.max_concurrent_searches)
        self.heartbeat_s = 10.0

    # --- request handling -------------------------------------------------------------------

    def authorize(self, request: Request) -> None:
        if self.token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.encode(), self.token.encode()
        ):
            raise ApiError(
                401,
                "missing or invalid bearer token",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def read_body(self, request: Request) -> Any:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body over {limit} bytes", code="body_too_large")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, f"request body over {limit} bytes", code="body_too_large")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from exc

    def parse(self, model: type[BaseModel], data: Any) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            param = ".".join(str(part) for part in error["loc"])
            raise ApiError(400, f"{param}: {error['msg']}", param=param) from exc

    def search_for(self, model: str, overrides: api.SearchOverrides) -> RebaseSearch:
        if model not in self.searches:
            raise ApiError(
                404,
                f"the model {model!r} does not exist; known: {', '.join(self.searches)}",
                param="model",
                code="model_not_found",
            )
        route: RouteConfig = self.routes[model]
        search = self.searches[model]
        update: dict[str, Any] = {}
        if overrides.budget is not None:
            if overrides.budget > route.max_budget:
                raise ApiError(
                    400,
                    f"rebase.budget {overrides.budget} is over this model's limit "
                    f"{route.max_budget}",
                    param="rebase.budget",
                    code="budget_too_large",
                )
            update["budget"] = overrides.budget
        if overrides.balance_temperature is not None:
            if overrides.balance_temperature > route.max_balance_temperature:
                raise ApiError(
                    400,
                    f"rebase.balance_temperature {overrides.balance_temperature} is over "
                    f"this model's limit {route.max_balance_temperature}",
                    param="rebase.balance_temperature",
                )
            update["balance_temperature"] = overrides.balance_temperature
        if not update:
            return search
        try:
            return search.with_config(search.config.model_copy(update=update))
        except ValidationError as exc:
            raise ApiError(400, str(exc.errors()[0]["msg"]), param="rebase") from exc

    async def completions(self, request: Request, kind: Kind) -> Response:
        try:
            self.authorize(request)
            data = await self.read_body(request)
            model = api.ChatCompletionRequest if kind == "chat" else api.CompletionRequest
            body = self.parse(model, data)
            search = self.search_for(body.model, body.rebase)
            try:
                problem = body.problem()
            except ValueError as exc:
                raise ApiError(400, str(exc), param="messages") from exc
            if not problem.strip():
                raise ApiError(400, "the problem is empty", param="messages")
            try:
                self.searches_running.acquire_nowait()
            except anyio.WouldBlock:
                raise ApiError(
                    429,
                    f"{self.config.max_concurrent_searches} searches are already running; "
                    "retry later",
                    type="rate_limit_error",
                    code="too_many_searches",
                    headers={"Retry-After": "1"},
                ) from None
        except ApiError as exc:
            return exc.response()
        if body.stream:
            return _SearchStream(self, search, problem, kind, body.model)
        try:
            result = await self.solve_until_disconnect(request, search, problem)
        except ApiError as exc:
            return exc.response()
        finally:
            self.searches_running.release()
        if result is None:  # the client left; nobody reads this
            return Response(status_code=499)
        return JSONResponse(_final_body(result, kind, body.model))

    async def solve_until_disconnect(
        self, request: Request, search: RebaseSearch, problem: str
    ) -> SearchResult | None:
        result: SearchResult | None = None
        error: ApiError | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_disconnect, request.receive, tg.cancel_scope)
            try:
                result = await _solve(search, problem)
            except ApiError as exc:  # raised outside the group, not wrapped in one
                error = exc
            tg.cancel_scope.cancel()
        if error is not None:
            raise error
        return result

    async def models(self, request: Request) -> Response:
        try:
            self.authorize(request)
        except ApiError as exc:
            return exc.response()
        created = api.now()
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "rebase-agent",
                "rebase": {
                    "backend": route.backend,
                    "strategy": route.strategy,
                    "test_double": is_double(route.backend),
                },
            }
            for name, route in self.routes.items()
        ]
        return JSONResponse({"object": "list", "data": data})


async def _solve(search: RebaseSearch, problem: str, **kwargs: Any) -> SearchResult:
    """Run a search, mapping its failures to API errors."""
    try:
        return await search.solve(problem, **kwargs)
    except SearchTimeout as exc:
        raise ApiError(504, str(exc), type="server_error", code="search_timeout") from exc
    except SearchFailed as exc:
        cause = exc.__cause__
        message = f"the search failed: {type(cause).__name__}: {cause}" if cause else str(exc)
        raise ApiError(502, message, type="server_error", code="search_failed") from exc


async def _cancel_on_disconnect(receive: Receive, scope: CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


def _choice(result: SearchResult, kind: Kind) -> dict[str, Any]:
    text = result.solution or ""
    finish = "stop" if result.solution is not None else "length"
    if kind == "chat":
        return {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish,
        }
    return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}


def _final_body(result: SearchResult, kind: Kind, model: str) -> dict[str, Any]:
    return {
        "id": api.completion_id(kind),
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": api.now(),
        "model": model,
        "choices": [_choice(result, kind)],
        "usage": api.usage(result),
        "rebase": api.summary(result),
    }


class _SearchStream(Response):
    """A streamed search: SSE progress comments, then the answer as chunks, then ``[DONE]``."""

    media_type = "text/event-stream"

    def __init__(self, server: _Server, search: RebaseSearch, problem: str, kind: Kind, model: str):
        super().__init__()
        # No Content-Length: the body is streamed until the search ends.
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
        ]
        self.server, self.search, self.problem = server, search, problem
        self.kind, self.model = kind, model
        self.id = api.completion_id(kind)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def write(event: str) -> None:
            await send({"type": "http.response.body", "body": event.encode(), "more_body": True})

        tx, rx = anyio.create_memory_object_stream[DepthStats | SearchResult | ApiError](math.inf)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
                tg.start_soon(self._search, tx)
                await write(": search started\n\n")
                async with rx:
                    while True:
                        item: DepthStats | SearchResult | ApiError | None = None
                        with anyio.move_on_after(self.server.heartbeat_s):
                            try:
                                item = await rx.receive()
                            except anyio.EndOfStream:
                                break
                        await write(self._event(item))
                await write("data: [DONE]\n\n")
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                tg.cancel_scope.cancel()
        finally:
            self.server.searches_running.release()

    def _event(self, item: DepthStats | SearchResult | ApiError | None) -> str:
        if item is None:
            return ": keep-alive\n\n"
        if isinstance(item, DepthStats):
            live = item.children - item.finished
            return f": depth {item.depth + 1}: {live} live, {item.finished} finished\n\n"
        if isinstance(item, ApiError):
            return f"data: {json.dumps(item.body)}\n\n"
        return "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in self._chunks(item))

    async def _search(self, tx: Any) -> None:
        async with tx:
            try:
                result = await _solve(self.search, self.problem, on_round=tx.send_nowait)
            except ApiError as exc:
                tx.send_nowait(exc)
            else:
                tx.send_nowait(result)

    def _chunks(self, result: SearchResult) -> list[dict[str, Any]]:
        choice = _choice(result, self.kind)
        base = {"id": self.id, "created": api.now(), "model": self.model}
        if self.kind == "chat":
            base["object"] = "chat.completion.chunk"
            delta = {"index": 0, "delta": choice["message"], "finish_reason": None}
            final = {"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}
        else:
            base["object"] = "text_completion"
            delta = {"index": 0, "text": choice["text"], "finish_reason": None, "logprobs": None}
            final = {
                "index": 0,
                "text": "",
                "finish_reason": choice["finish_reason"],
                "logprobs": None,
            }
        return [
            {**base, "choices": [delta]},
            {**base, "choices": [final], "usage": api.usage(result), "rebase": api.summary(result)},
        ]


def create_app(
    config: ServerConfig | None = None,
    *,
    backends: Mapping[str, tuple[Provider, Scorer]] | None = None,
) -> Starlette:
    """The ASGI app.

    Args:
        config: Routes and limits; one ``rebase-demo`` route on the default backend (the
            embedded Gemma 3 270M) if ``None``.
        backends: Ready-made ``(provider, scorer)`` pairs by route name, instead of building them
            from the route's ``backend`` and ``options`` (for tests and embedding).
    """
    server = _Server(config or ServerConfig(), backends)

    async def chat(request: Request) -> Response:
        return await server.completions(request, "chat")

    async def text(request: Request) -> Response:
        return await server.completions(request, "text")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for search in server.searches.values():
            await aclose(search.provider, search.scorer)

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", text, methods=["POST"]),
            Route("/v1/models", server.models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.server = server
    return app
