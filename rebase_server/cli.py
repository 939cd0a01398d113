"""``rebase-agent serve``: run the OpenAI-compatible server with uvicorn."""

from __future__ import annotations

import click
import uvicorn

from rebase_agent._cli_common import note_if_double
from rebase_server.app import create_app
from rebase_server.config import ServerConfig, load_config

__all__ = ("serve",)


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Routes and limits, TOML or YAML (one route on the embedded model if omitted).",
)
@click.option("--host", default=None, help="Overrides the config's host.")
@click.option("--port", type=int, default=None, help="Overrides the config's port.")
def serve(config_path: str | None, host: str | None, port: int | None) -> None:
    """Serve REBASE as an OpenAI-compatible API (chat and text completions, models, health)."""
    config = load_config(config_path) if config_path else ServerConfig()
    updates = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    config = config.model_copy(update=updates)
    for backend in dict.fromkeys(route.backend for route in config.routes.values()):
        note_if_double(backend)
    app = create_app(config)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
