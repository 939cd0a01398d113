"""REBASE behind an OpenAI-compatible HTTP API, for agent frameworks.

``POST /v1/chat/completions``, ``POST /v1/completions`` and ``POST /v1/responses`` run a search
on the route (model) the request names; the last user turn (or the prompt) is the problem, the
earlier turns its context, and the chosen solution is the reply. Every request field is
implemented or refused with a 400 naming it (see :mod:`rebase_server.openai_api`). A route with
``forward_tools`` forwards tool-calling chat turns to its policy endpoint unchanged.
``GET /v1/models`` and ``GET /v1/models/{id}`` describe the routes (with their backend and
strategy, and ``test_double: true`` for a route on a test double); ``GET /health`` answers
without auth.

Bodies must be ``application/json`` (415 otherwise: a cross-site ``text/plain`` POST from a web
page cannot start a search), valid UTF-8 JSON without lone surrogates, at most
``max_body_bytes`` long and 64 levels deep; any other body gets a 400, never a 500. Errors,
404 and 405 included, use OpenAI's JSON shape.

Every search runs in the request's own task, within ``request_timeout_s``. A client that
disconnects cancels its search and every provider and scorer request the search had in flight.
``stream: true`` sends SSE comments with the progress of each depth (and a keep-alive comment
while a depth is slow), then the answer as chunks, then ``data: [DONE]``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import math
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
from anyio import CancelScope
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from rebase_agent import (
    DepthStats,
    Provider,
    RebaseSearch,
    Scorer,
    SearchFailed,
    SearchResult,
    SearchTimeout,
)
from rebase_agent.backends import aclose, is_double
from rebase_server import openai_api as api
from rebase_server.config import RouteConfig, ServerConfig
from rebase_server.openai_api import ApiError, Kind
from rebase_server.routes import SettingError, build_searches, customise, prepare_searches

__all__ = ("ApiError", "create_app", "prepare_app")

logger = logging.getLogger(__name__)

MAX_JSON_DEPTH = 64
"""Deepest nesting of a request body (OpenAI's own bodies, tool schemas included, stay far
below it)."""


def safe_sender(send: Callable[[Any], None]) -> Callable[[Any], None]:
    """``send`` that drops the item once the receiving side is gone.

    The search reports a round from a ``finally`` even while it is being cancelled (the client
    left); sending on the closed stream then must not turn the cancellation into an error.
    """

    def sender(item: Any) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            send(item)

    return sender


def check_json(value: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse bodies nested deeper than ``max_depth`` or holding a string that is not valid
    Unicode (a lone surrogate, which JSON's ``\\ud800`` escapes can carry).

    Raises:
        ApiError: 400, naming where.
    """
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        item, depth, path = stack.pop()
        if depth > max_depth:
            raise ApiError(400, f"request body is nested deeper than {max_depth} levels")
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                where = path.lstrip(".") or "the body"
                raise ApiError(
                    400,
                    f"{where}: the string holds a lone surrogate (an unpaired \\ud800-\\udfff "
                    "escape), which is not valid Unicode",
                    param=path.lstrip(".") or None,
                ) from None
        elif isinstance(item, dict):
            for key, child in item.items():
                stack.append((key, depth + 1, f"{path}.<key>"))
                stack.append((child, depth + 1, f"{path}.{key}"))
        elif isinstance(item, list):
            for index, child in enumerate(item):
                stack.append((child, depth + 1, f"{path}[{index}]"))


@dataclass(frozen=True)
class _Shape:
    """How a reply is written: its endpoint and the fields that shape it."""

    kind: Kind
    model: str
    n: int = 1
    stops: tuple[str, ...] = ()
    include_usage: bool = False
    responses: api.ResponsesRequest | None = None
    """The request, for ``/v1/responses`` (its reply echoes some fields)."""


class _Server:
    def __init__(
        self, config: ServerConfig, backends: Mapping[str, tuple[Provider, Scorer]] | None
    ) -> None:
        self.config = config
        self.token = config.bearer_token()
        self.routes = config.routes
        self.searches: dict[str, RebaseSearch] = build_searches(config, backends)
        self.searches_running = anyio.CapacityLimiter(config.max_concurrent_searches)
        self.heartbeat_s = 10.0
        self.http: httpx2.AsyncClient | None = None
        """The client that forwards tool turns, opened by the app's lifespan."""
        self.prepared = False

    async def prepare(self) -> None:
        """Probe each route's server once (see :func:`prepare_app`)."""
        if self.prepared:
            return
        self.searches = await prepare_searches(self.config, self.searches)
        self.prepared = True

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
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            raise ApiError(
                415,
                "the body must be JSON, sent with Content-Type: application/json "
                f"(got {media_type or 'no content type'!r})",
                code="unsupported_media_type",
            )
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
            data = json.loads(body)
        except RecursionError:
            raise ApiError(
                400, f"request body is nested deeper than {MAX_JSON_DEPTH} levels"
            ) from None
        except ValueError as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from None
        check_json(data)
        if not isinstance(data, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return data

    def parse(self, model: type[BaseModel], data: Any) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            param = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            raise ApiError(400, f"{param}: {message}", param=param or None) from None

    def route(self, model: str) -> RouteConfig:
        if model not in self.searches:
            raise ApiError(
                404,
                f"the model {model!r} does not exist; known: {', '.join(self.searches)}",
                param="model",
                code="model_not_found",
            )
        return self.routes[model]

    async def completions(self, request: Request, kind: Kind) -> Response:
        try:
            self.authorize(request)
            data = await self.read_body(request)
            model = _REQUESTS[kind]
            body = self.parse(model, data)
            route = self.route(body.model)
            if (
                isinstance(body, api.ChatCompletionRequest)
                and route.forward_tools is not None
                and body.tool_fields()
            ):
                return await self.forward(request, route, body.model, data)
            body.check()
            problem = body.problem()
            if not problem.strip():
                raise ApiError(400, "the problem is empty", param=_problem_param(kind))
            try:
                search = customise(self.searches[body.model], route, body.settings())
            except SettingError as exc:
                raise ApiError(400, str(exc), param=exc.param, code=exc.code) from None
            shape = _Shape(kind, body.model)
            if isinstance(body, api.ResponsesRequest):
                shape = _Shape(kind, body.model, responses=body)
            if isinstance(body, api.ChatCompletionRequest | api.CompletionRequest):
                shape = _Shape(kind, body.model, body.n, tuple(body.stops()), body.include_usage())
            self.acquire_slot()
        except ApiError as exc:
            return exc.response()
        if body.stream:
            return _SearchStream(self, search, problem, shape)
        try:
            result = await self.solve_until_disconnect(request, search, problem)
        except ApiError as exc:
            return exc.response()
        finally:
            self.searches_running.release()
        if result is None:  # the client left; nobody reads this
            return Response(status_code=499)
        if kind == "responses":
            return JSONResponse(api.responses_body(result, body, body.model))
        return JSONResponse(_final_body(result, shape))

    def acquire_slot(self) -> None:
        try:
            self.searches_running.acquire_nowait()
        except anyio.WouldBlock:
            raise ApiError(
                429,
                f"{self.config.max_concurrent_searches} searches are already running; retry later",
                type="rate_limit_error",
                code="too_many_searches",
                headers={"Retry-After": "1"},
            ) from None

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

    async def forward(
        self, request: Request, route: RouteConfig, name: str, data: dict[str, Any]
    ) -> Response:
        """Send a tool-calling turn to the route's ``forward_tools`` endpoint, unchanged but
        for the model name (and without the ``rebase`` field), and relay its answer."""
        forward = route.forward_tools
        if forward is None or self.http is None:  # the app's lifespan did not run
            raise ApiError(
                503, "the server is not started", type="server_error", code="not_started"
            )
        payload = {k: v for k, v in data.items() if k != "rebase"}
        payload["model"] = forward.model or name
        headers = {"content-type": "application/json"}
        if forward.api_key_env:
            key = os.environ.get(forward.api_key_env)
            if not key:
                raise ApiError(
                    500,
                    f"this route forwards tool turns with the key in {forward.api_key_env!r}, "
                    "which is not set",
                    type="server_error",
                    code="forward_misconfigured",
                )
            headers["authorization"] = f"Bearer {key}"
        upstream = self.http.build_request(
            "POST",
            forward.base_url.rstrip("/") + "/chat/completions",
            json=payload,
            headers=headers,
            timeout=forward.timeout_s,
        )
        if payload.get("stream"):
            return _ForwardStream(self.http, upstream)
        try:
            reply = await self.http.send(upstream)
        except httpx2.HTTPError as exc:
            raise ApiError(
                502,
                f"the route's tool endpoint failed: {type(exc).__name__}",
                type="server_error",
                code="forward_failed",
            ) from None
        return Response(
            reply.content,
            status_code=reply.status_code,
            media_type=reply.headers.get("content-type", "application/json"),
        )

    def model_card(self, name: str, route: RouteConfig) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": api.now(),
            "owned_by": "rebase-agent",
            "rebase": {
                "backend": route.backend,
                "strategy": route.strategy,
                "test_double": is_double(route.backend),
                "forwards_tools": route.forward_tools is not None,
            },
        }

    async def models(self, request: Request) -> Response:
        try:
            self.authorize(request)
        except ApiError as exc:
            return exc.response()
        data = [self.model_card(name, route) for name, route in self.routes.items()]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        try:
            self.authorize(request)
            name = request.path_params["model"]
            return JSONResponse(self.model_card(name, self.route(name)))
        except ApiError as exc:
            return exc.response()


_REQUESTS: dict[
    Kind, type[api.ChatCompletionRequest] | type[api.CompletionRequest] | type[api.ResponsesRequest]
] = {
    "chat": api.ChatCompletionRequest,
    "text": api.CompletionRequest,
    "responses": api.ResponsesRequest,
}


def _problem_param(kind: Kind) -> str:
    return {"chat": "messages", "text": "prompt", "responses": "input"}[kind]


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


def _final_body(result: SearchResult, shape: _Shape) -> dict[str, Any]:
    texts = api.solutions(result, shape.n, shape.stops)
    chat = shape.kind == "chat"
    return {
        "id": api.completion_id(shape.kind),
        "object": "chat.completion" if chat else "text_completion",
        "created": api.now(),
        "model": shape.model,
        "choices": api.chat_choices(texts) if chat else api.text_choices(texts),
        "usage": api.usage(result),
        "rebase": api.summary(result),
    }


class _SearchStream(Response):
    """A streamed search: SSE progress comments, then the answer as chunks, then ``[DONE]``."""

    media_type = "text/event-stream"

    def __init__(self, server: _Server, search: RebaseSearch, problem: str, shape: _Shape):
        super().__init__()
        # No Content-Length: the body is streamed until the search ends.
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
        ]
        self.server, self.search, self.problem, self.shape = server, search, problem, shape
        self.id = api.completion_id(shape.kind)
        self.sequence = 0

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
                if self.shape.responses is None:
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
        if self.shape.responses is not None:
            return "".join(
                f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
                for event in self._response_events(item)
            )
        if isinstance(item, ApiError):
            return f"data: {json.dumps(item.body)}\n\n"
        return "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in self._chunks(item))

    def _response_events(self, item: SearchResult | ApiError) -> list[dict[str, Any]]:
        """The Responses API's stream events for the answer (or the error)."""
        assert self.shape.responses is not None
        if isinstance(item, ApiError):
            error = item.body["error"]
            fields = {k: error[k] for k in ("code", "message", "param")}
            # The Responses API's error event, with OpenAI's error object too, so that
            # clients raise it rather than pass it on as an event.
            events: list[dict[str, Any]] = [{"type": "error", **fields, "error": error}]
        else:
            final = api.responses_body(item, self.shape.responses, self.shape.model)
            message = final["output"][0]
            part = message["content"][0]
            started = {**final, "status": "in_progress", "output": [], "usage": None}
            ids = {"item_id": message["id"], "output_index": 0, "content_index": 0}
            empty_part = {**part, "text": ""}
            events = [
                {"type": "response.created", "response": started},
                {"type": "response.in_progress", "response": started},
                {
                    "type": "response.output_item.added",
                    "output_index": 0,
                    "item": {**message, "status": "in_progress", "content": []},
                },
                {"type": "response.content_part.added", **ids, "part": empty_part},
                {"type": "response.output_text.delta", **ids, "delta": part["text"]},
                {"type": "response.output_text.done", **ids, "text": part["text"]},
                {"type": "response.content_part.done", **ids, "part": part},
                {"type": "response.output_item.done", "output_index": 0, "item": message},
                {"type": "response.completed", "response": final},
            ]
        for event in events:
            event["sequence_number"] = self.sequence
            self.sequence += 1
        return events

    async def _search(self, tx: Any) -> None:
        send = safe_sender(tx.send_nowait)
        async with tx:
            try:
                result = await _solve(self.search, self.problem, on_round=send)
            except ApiError as exc:
                send(exc)
            else:
                send(result)

    def _chunks(self, result: SearchResult) -> list[dict[str, Any]]:
        texts = api.solutions(result, self.shape.n, self.shape.stops)
        base = {"id": self.id, "created": api.now(), "model": self.shape.model}
        chunks: list[dict[str, Any]] = []
        if self.shape.kind == "chat":
            base["object"] = "chat.completion.chunk"
            for i, (text, _) in enumerate(texts):
                delta = {"role": "assistant", "content": text}
                chunks.append(
                    {**base, "choices": [{"index": i, "delta": delta, "finish_reason": None}]}
                )
            for i, (_, finish) in enumerate(texts):
                final = {"index": i, "delta": {}, "finish_reason": finish}
                chunks.append({**base, "choices": [final]})
        else:
            base["object"] = "text_completion"
            for i, (text, _) in enumerate(texts):
                choice = {"index": i, "text": text, "finish_reason": None, "logprobs": None}
                chunks.append({**base, "choices": [choice]})
            for i, (_, finish) in enumerate(texts):
                final = {"index": i, "text": "", "finish_reason": finish, "logprobs": None}
                chunks.append({**base, "choices": [final]})
        chunks[-1]["rebase"] = api.summary(result)
        if self.shape.include_usage:
            chunks.append({**base, "choices": [], "usage": api.usage(result)})
        return chunks


class _ForwardStream(Response):
    """Relays a streamed tool turn from the route's ``forward_tools`` endpoint, byte for byte;
    a client that leaves closes the upstream request."""

    def __init__(self, http: httpx2.AsyncClient, upstream: httpx2.Request) -> None:
        super().__init__()
        self.http, self.upstream = http, upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
            try:
                reply = await self.http.send(self.upstream, stream=True)
            except httpx2.HTTPError as exc:
                error = ApiError(
                    502,
                    f"the route's tool endpoint failed: {type(exc).__name__}",
                    type="server_error",
                    code="forward_failed",
                )
                await error.response()(scope, receive, send)
                tg.cancel_scope.cancel()
                return
            try:
                content_type = reply.headers.get("content-type", "text/event-stream")
                headers = [(b"content-type", content_type.encode("latin-1"))]
                start = {"type": "http.response.start", "status": reply.status_code}
                await send({**start, "headers": headers})
                try:
                    async for chunk in reply.aiter_raw():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except httpx2.HTTPError:
                    logger.warning("the tool endpoint's stream broke off")
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                with CancelScope(shield=True):
                    await reply.aclose()
            tg.cancel_scope.cancel()


def _error_handler(status_codes: Mapping[int, str]) -> Callable[[Request, Exception], Any]:
    async def handle(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            code = status_codes.get(exc.status_code, "error")
            message = {
                404: f"no route {request.url.path!r}",
                405: f"{request.method} is not allowed on {request.url.path!r}",
            }.get(exc.status_code, str(exc.detail))
            return ApiError(exc.status_code, message, code=code, headers=exc.headers).response()
        logger.error("unexpected error on %s", request.url.path, exc_info=exc)
        return ApiError(500, "internal server error", type="server_error").response()

    return handle


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

    Raises:
        ConfigError: A route's backend cannot be built, or ``api_key_env`` is not set.
    """
    server = _Server(config or ServerConfig(), backends)

    async def chat(request: Request) -> Response:
        return await server.completions(request, "chat")

    async def text(request: Request) -> Response:
        return await server.completions(request, "text")

    async def responses(request: Request) -> Response:
        return await server.completions(request, "responses")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.prepare()  # at once where prepare_app ran already
        async with httpx2.AsyncClient() as http:
            server.http = http
            try:
                yield
            finally:
                server.http = None
                for search in server.searches.values():
                    await aclose(search.provider, search.scorer)

    handler = _error_handler({404: "not_found", 405: "method_not_allowed"})
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", text, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/models", server.models, methods=["GET"]),
            Route("/v1/models/{model:path}", server.model, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: handler, Exception: handler},
        lifespan=lifespan,
    )
    app.state.server = server
    return app


async def prepare_app(app: Starlette) -> None:
    """Probe each route's server once, before the first request: the provider's and the
    scorer's ``prepare()``, where they have one (the openai backend's probe). The routes'
    searches then take the search fields that a preset the probe chose recommends, under the
    route's own. The app's lifespan calls it too (at once when it ran already); ``rebase-agent
    serve`` calls it before binding the port, so a bad server fails the command.

    Raises:
        ConfigError: A route's server cannot run a search: ``routes.NAME: probe: ...``. Every
            route's provider and scorer are closed first.
    """
    server: _Server = app.state.server
    await server.prepare()
