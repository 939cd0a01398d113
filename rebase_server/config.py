"""Server configuration: routes (named models) and limits, from a TOML or YAML file.

Example ``rebase-server.toml``::

    host = "127.0.0.1"
    port = 8000
    api_key_env = "REBASE_API_KEY"     # bearer token, read from this environment variable
    max_concurrent_searches = 4

    [routes.rebase-demo]               # clients ask for model "rebase-demo"
    backend = "llama"                  # a name from rebase_agent.backends (default: llama)
    strategy = "rebase"
    max_budget = 64                    # per-request "budget" overrides are capped here
    options = { n_ctx = "4096" }       # passed to the backend factory
    search = { budget = 16, balance_temperature = 0.2 }   # a RebaseConfig

Without a config file the server has one route, ``rebase-demo``, on the default backend (the
embedded Gemma 3 270M). The test doubles (``scripted``, ``arithmetic-sim``) run only when a
route names them, and ``/v1/models`` marks those routes.
"""

from __future__ import annotations

import os
import pathlib
import tomllib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from rebase_agent import RebaseConfig, StrategyName
from rebase_agent.backends import DEFAULT_BACKEND
from rebase_agent.scorers import Check

__all__ = ("RouteConfig", "ServerConfig", "load_config")


class RouteConfig(BaseModel):
    """One model name clients can ask for: a backend, a strategy and a search config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = DEFAULT_BACKEND
    """A name from :mod:`rebase_agent.backends`: the embedded Gemma 3 270M by default."""
    options: dict[str, str] = Field(default_factory=dict)
    """Backend options, as ``--option KEY=VALUE`` on the command line."""
    check: Check = "arithmetic"
    """Multiply the backend's step scores by a tool check (:func:`rebase_agent.with_check`);
    ``none``: the backend's scorer alone."""
    strategy: StrategyName = "rebase"
    search: RebaseConfig = Field(default_factory=RebaseConfig)
    max_budget: int = Field(64, ge=1)
    """Largest ``budget`` a request may ask for."""
    max_balance_temperature: float = Field(10.0, gt=0.0)
    """Largest ``balance_temperature`` a request may ask for."""

    @model_validator(mode="after")
    def _default_budget_within_cap(self) -> RouteConfig:
        if self.search.budget > self.max_budget:
            raise ValueError(
                f"search.budget ({self.search.budget}) exceeds max_budget ({self.max_budget})"
            )
        return self


class ServerConfig(BaseModel):
    """Everything ``rebase-agent serve`` needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = None
    """Bearer token every route but ``/health`` requires; prefer ``api_key_env``."""
    api_key_env: str | None = None
    """Name of an environment variable that holds the bearer token."""
    max_concurrent_searches: int = Field(4, ge=1)
    """Searches running at once; a request beyond that gets a 429."""
    max_body_bytes: int = Field(1_000_000, ge=1024)
    request_timeout_s: float | None = Field(None, gt=0.0)
    """Wall-clock limit of one search (overrides the route's ``search.timeout_s``)."""
    routes: dict[str, RouteConfig] = Field(
        default_factory=lambda: {"rebase-demo": RouteConfig()}, min_length=1
    )

    def bearer_token(self) -> str | None:
        """The token clients must send, from ``api_key`` or ``api_key_env``."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            token = os.environ.get(self.api_key_env)
            if not token:
                raise ValueError(f"api_key_env names {self.api_key_env!r}, which is not set")
            return token
        return None


def load_config(path: str | pathlib.Path) -> ServerConfig:
    """Read a :class:`ServerConfig` from a ``.toml``, ``.yaml`` or ``.yml`` file."""
    path = pathlib.Path(path)
    text = path.read_text()
    data: Any
    if path.suffix == ".toml":
        data = tomllib.loads(text)
    elif path.suffix in {".yaml", ".yml"}:
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("YAML configs need PyYAML: pip install pyyaml") from exc
        data = yaml.safe_load(text)
    else:
        raise ValueError(f"config file must end in .toml, .yaml or .yml, got {path.name!r}")
    return ServerConfig.model_validate(data)
