"""REBASE as an MCP tool (``rebase-agent mcp``): any MCP client (Claude Desktop, Cursor, an agent
framework) gets a ``solve`` tool backed by the server's routes.

``solve(problem, budget=None, strategy=None, route=None)`` runs one search on a route (the first
one by default), reports each depth as MCP progress (``notifications/progress``, when the client
asked for it), stops when the client cancels the call, and returns the answer with the votes, the
winning path (each step with its score) and the usage as structured content (the tool's output
schema is :class:`Solution`). Failures come back as tool errors (``isError``) naming what failed.

The routes, caps and limits are those of ``rebase-agent serve`` (:class:`ServerConfig`); over
streamable HTTP the bearer token guards every request and, as for ``serve``, a server without
one binds only to loopback unless told ``--insecure``.

Needs the ``mcp`` extra: ``pip install 'rebase-agent[mcp]'``.
"""

from __future__ import annotations

import contextlib
import hmac
import math
from collections.abc import Mapping
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from rebase_agent import (
    DepthStats,
    Provider,
    RebaseSearch,
    Scorer,
    SearchFailed,
    SearchResult,
    SearchTimeout,
    StrategyName,
)
from rebase_agent.backends import aclose, is_double
from rebase_server.config import ServerConfig
from rebase_server.routes import (
    RequestSettings,
    SettingError,
    build_searches,
    customise,
    prepare_searches,
)

__all__ = ("BearerAuth", "RebaseMCP", "Solution", "create_mcp_server")


class Step(BaseModel):
    """One step of the winning path."""

    text: str
    score: float
    """The process reward model's score of this step."""


class Vote(BaseModel):
    """One class of equivalent answers."""

    answer: str
    count: int
    """Finished paths with this answer."""
    weight: float
    """Sum of their scores."""
    best_score: float


class SolveUsage(BaseModel):
    """Everything the search spent."""

    provider_requests: int
    prompt_tokens: int
    completion_tokens: int
    scorer_calls: int
    scorer_prompt_tokens: int
    scorer_completion_tokens: int
    total_tokens: int
    wall_s: float


class Solution(BaseModel):
    """What ``solve`` returns."""

    answer: str | None
    """The chosen answer; ``None`` when no finished path states one."""
    solution: str | None
    """The chosen solution's text."""
    path: list[Step]
    """The winning path, each step with its score."""
    votes: list[Vote]
    """Answer classes, most votes first (by the route's aggregation)."""
    usage: SolveUsage
    route: str
    strategy: StrategyName
    budget: int
    stopped: str
    """Why the search ended: ``done``, ``max_depth`` or ``token_budget``."""
    finished_paths: int
    unfinished_paths: int
    tree_shape: list[int]
    test_double: bool
    """True on a test-double backend: the answer means nothing."""


def solution_of(result: SearchResult, route: str, backend: str) -> Solution:
    """The tool's structured result for one search."""
    chosen = next((c for c in result.candidates if c.node_id == result.chosen), None)
    return Solution(
        answer=result.answer,
        solution=result.solution,
        path=[]
        if chosen is None
        else [
            Step(text=text, score=score)
            for text, score in zip(chosen.steps, chosen.step_scores, strict=False)
        ],
        votes=[Vote.model_validate(v, from_attributes=True) for v in result.votes],
        usage=SolveUsage.model_validate(result.usage, from_attributes=True),
        route=route,
        strategy=result.strategy,
        budget=result.config.budget,
        stopped=result.stopped,
        finished_paths=len(result.candidates),
        unfinished_paths=result.unfinished,
        tree_shape=result.tree_shape(),
        test_double=is_double(backend),
    )


_LEVEL_STRATEGIES = ("rebase", "sampling", "beam")
"""One round per depth: progress counts depths out of ``max_depth``."""


class RebaseMCP:
    """The routes' searches behind an :class:`MCPServer` with one tool, ``solve``.

    Args:
        config: Routes and limits (those of ``serve``); one ``rebase-demo`` route on the
            embedded model if ``None``.
        backends: Ready-made ``(provider, scorer)`` pairs by route name (tests, embedding).

    Raises:
        ConfigError: A route's backend cannot be built, or ``api_key_env`` is not set.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        backends: Mapping[str, tuple[Provider, Scorer]] | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        self.token = self.config.bearer_token()
        self.searches = build_searches(self.config, backends)
        self.searches_running = anyio.CapacityLimiter(self.config.max_concurrent_searches)
        self.default_route = next(iter(self.config.routes))
        routes = ", ".join(
            f"{name} ({route.strategy} on {route.backend}"
            + (", a test double" if is_double(route.backend) else "")
            + f", budget up to {route.max_budget})"
            for name, route in self.config.routes.items()
        )
        self.server: MCPServer[Any] = MCPServer(
            "rebase-agent",
            instructions=(
                "solve answers a reasoning or math problem with a REBASE tree search over "
                "reasoning steps: many sampled paths, each step scored by a process reward "
                f"model, the answer chosen by a vote. Routes: {routes}."
            ),
        )
        self.server.add_tool(
            self.solve,
            name="solve",
            title="Solve with REBASE",
            description=(
                "Solve a reasoning or math problem with a reward-balanced tree search; returns "
                "the answer, the vote over the finished paths, the winning path with each "
                "step's score, and the tokens spent. Progress is reported for each depth."
            ),
            annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False),
            structured_output=True,
        )

    async def prepare(self) -> None:
        """Probe each route's server once, before the first call (see
        :func:`~rebase_server.routes.prepare_searches`); ``rebase-agent mcp`` calls it before it
        serves, so a bad server fails the command.

        Raises:
            ConfigError: A route's server cannot run a search.
        """
        self.searches = await prepare_searches(self.config, self.searches)

    async def solve(
        self,
        problem: Annotated[str, Field(min_length=1, description="The problem, in full.")],
        ctx: Context,
        budget: Annotated[
            int | None,
            Field(ge=1, description="Paths to sample (the search budget N); capped per route."),
        ] = None,
        strategy: Annotated[
            StrategyName | None, Field(description="Search strategy; the route's by default.")
        ] = None,
        route: Annotated[
            str | None, Field(description="Which configured route (model) to use.")
        ] = None,
    ) -> Solution:
        name = route or self.default_route
        if name not in self.searches:
            raise ToolError(f"unknown route {name!r}; known: {', '.join(self.searches)}")
        if not problem.strip():
            raise ToolError("the problem is empty")
        route_config = self.config.routes[name]
        try:
            search = customise(
                self.searches[name],
                route_config,
                RequestSettings(budget=budget, strategy=strategy),
            )
        except SettingError as exc:
            raise ToolError(str(exc)) from None
        async with self.searches_running:
            result = await self._run(search, problem, ctx)
        return solution_of(result, name, route_config.backend)

    async def _run(self, search: RebaseSearch, problem: str, ctx: Context) -> SearchResult:
        """The search, with each round reported as progress while it runs."""
        total = float(search.config.max_depth) if search.strategy in _LEVEL_STRATEGIES else None
        tx, rx = anyio.create_memory_object_stream[DepthStats](math.inf)

        def on_round(stats: DepthStats) -> None:
            # Reported from a finally while cancelled too, when nobody listens any more.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                tx.send_nowait(stats)

        async def report() -> None:
            rounds = 0
            async with rx:
                async for stats in rx:
                    rounds += 1
                    live = stats.children - stats.finished
                    message = (
                        f"depth {stats.depth + 1}: {stats.expanded} nodes expanded, "
                        f"{live} live, {stats.finished} finished"
                    )
                    progress = float(rounds)  # strictly increasing, as MCP requires
                    try:
                        await ctx.report_progress(progress, total, message)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        return  # the client is gone; the search is being cancelled too

        outcome: SearchResult | ToolError
        async with anyio.create_task_group() as tg:
            tg.start_soon(report)
            with tx:
                try:
                    outcome = await search.solve(problem, on_round=on_round)
                except SearchTimeout as exc:
                    outcome = ToolError(str(exc))
                except SearchFailed as exc:
                    cause = exc.__cause__
                    detail = f"{type(cause).__name__}: {cause}" if cause else str(exc)
                    outcome = ToolError(f"the search failed: {detail}")
        if isinstance(outcome, ToolError):
            raise outcome  # outside the task group, so not wrapped in an exception group
        return outcome

    async def aclose(self) -> None:
        """Close every route's provider and scorer."""
        for search in self.searches.values():
            await aclose(search.provider, search.scorer)

    def http_app(self, host: str = "127.0.0.1", path: str = "/mcp") -> ASGIApp:
        """The streamable HTTP app (DNS-rebinding protection on loopback), behind the bearer
        token when one is configured."""
        app: Starlette = self.server.streamable_http_app(streamable_http_path=path, host=host)
        return BearerAuth(app, self.token) if self.token else app


def create_mcp_server(
    config: ServerConfig | None = None,
    *,
    backends: Mapping[str, tuple[Provider, Scorer]] | None = None,
) -> MCPServer[Any]:
    """The :class:`MCPServer` with the ``solve`` tool (see :class:`RebaseMCP`)."""
    return RebaseMCP(config, backends=backends).server


class BearerAuth:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>`` (compared in
    constant time); others get a 401 in JSON."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, given = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given, self.token):
                response = JSONResponse(
                    {"error": "missing or invalid bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
