"""``rebase-agent serve`` (the OpenAI-compatible server) and ``rebase-agent mcp`` (the MCP tool).

Both read the same config (routes, caps, key) and fail on a bad one with a single line that names
the field; ``serve`` also probes each route's server (the openai backend) before it binds the
port, and fails with the probe's reason on a server that cannot run a search. Without a bearer
token (``REBASE_API_KEY``, or the config's ``api_key_env``) they bind only to loopback unless
told ``--insecure``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Literal, TypeVar

import click

from rebase_agent.commands import note_if_double, run_command
from rebase_server.config import (
    ConfigError,
    ServerConfig,
    check_exposure,
    load_config,
)

__all__ = ("mcp", "serve")

F = TypeVar("F", bound=Callable[..., None])


def _config_options(function: F) -> F:
    for option in reversed(
        [
            click.option(
                "--config",
                "config_path",
                type=click.Path(dir_okay=False),
                default=None,
                help="Routes and limits, TOML or YAML (one route on the embedded model if "
                "omitted).",
            ),
            click.option("--host", default=None, help="Overrides the config's host."),
            click.option(
                "--port",
                type=click.IntRange(0, 65535),
                default=None,
                help="Overrides the config's port.",
            ),
            click.option(
                "--insecure",
                is_flag=True,
                help="Serve beyond loopback without an API key (anyone who can reach the port "
                "can spend your compute).",
            ),
        ]
    ):
        function = option(function)
    return function


def _load(config_path: str | None, host: str | None, port: int | None) -> ServerConfig:
    """The config with the command line's overrides, or a one-line usage error."""
    try:
        config = load_config(config_path) if config_path else ServerConfig()
        updates = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
        # model_copy keeps which search fields each route set (a backend's recommended fields
        # apply under them); host and port are checked by click and by uvicorn.
        config = config.model_copy(update=updates)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    for backend in dict.fromkeys(route.backend for route in config.routes.values()):
        note_if_double(backend)
    return config


def _token(config: ServerConfig, host: str, insecure: bool) -> str | None:
    try:
        token = config.bearer_token()
        check_exposure(host, token, insecure=insecure)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return token


def _note_open(token: str | None) -> None:
    if token is None:
        click.echo("note: no API key: anyone who can reach the port can run searches", err=True)


@click.command()
@_config_options
def serve(config_path: str | None, host: str | None, port: int | None, insecure: bool) -> None:
    """Serve REBASE as an OpenAI-compatible API (chat and text completions, responses, models,
    health)."""
    import uvicorn

    from rebase_server.app import create_app, prepare_app

    config = _load(config_path, host, port)
    token = _token(config, config.host, insecure)
    try:
        app = create_app(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    async def run() -> bool:
        try:  # each route's server probed (the openai backend) before the port is bound
            await prepare_app(app)
        except ConfigError as exc:
            raise click.ClickException(f"{exc}; not serving") from None
        _note_open(token)
        server = uvicorn.Server(
            uvicorn.Config(app, host=config.host, port=config.port, log_level="info")
        )
        await server.serve()
        return server.started

    started = run_command(run)
    if not started:
        sys.exit(3)  # uvicorn.run's exit status when the server did not start


@click.command()
@_config_options
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    help="stdio: the client starts this command; http: streamable HTTP on --host/--port.",
)
@click.option("--path", "http_path", default="/mcp", show_default=True, help="HTTP endpoint.")
def mcp(
    config_path: str | None,
    host: str | None,
    port: int | None,
    insecure: bool,
    transport: Literal["stdio", "http"],
    http_path: str,
) -> None:
    """Serve REBASE as an MCP tool, solve(problem, budget, strategy, route), over stdio or
    streamable HTTP."""

    try:
        from rebase_server.mcp_server import RebaseMCP
    except ImportError as exc:
        raise click.ClickException(
            f"rebase-agent mcp needs the mcp extra: pip install 'rebase-agent[mcp]' ({exc})"
        ) from None

    config = _load(config_path, host, port)
    token = _token(config, config.host, insecure) if transport == "http" else None
    try:
        server = RebaseMCP(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if transport == "http":
        _note_open(token)

    async def run() -> None:
        try:
            await server.prepare()  # a bad server fails here, before any client connects
            if transport == "stdio":
                await server.server.run_stdio_async()
            else:
                import uvicorn

                app = server.http_app(host=config.host, path=http_path)
                uv = uvicorn.Config(app, host=config.host, port=config.port, log_level="info")
                await uvicorn.Server(uv).serve()
        finally:
            await server.aclose()

    try:
        run_command(run)
    except ConfigError as exc:  # the probe found a route's server unusable
        raise click.ClickException(f"{exc}; not serving") from None
