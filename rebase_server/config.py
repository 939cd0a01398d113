"""Server configuration: routes (named models) and limits, from a TOML or YAML file.

Example ``rebase-server.toml``::

    host = "127.0.0.1"
    port = 8000
    api_key_env = "REBASE_API_KEY"     # bearer token, read from this environment variable
    max_concurrent_searches = 4
    request_timeout_s = 300            # wall-clock limit of one search (the default)

    [routes.rebase-demo]               # clients ask for model "rebase-demo"
    backend = "llama"                  # a name from rebase_agent.backends (default: llama)
    strategy = "rebase"
    max_budget = 64                    # per-request "budget" overrides are capped here
    options = { n_ctx = "4096" }       # passed to the backend factory
    search = { budget = 16, balance_temperature = 0.2 }   # a RebaseConfig

    [routes.rebase-demo.forward_tools] # optional: tool-calling turns go here, unchanged
    base_url = "http://127.0.0.1:8080/v1"
    model = "qwen2.5-7b-instruct"

Without a config file the server has one route, ``rebase-demo``, on the default backend (the
embedded Gemma 3 270M). The test doubles (``scripted``, ``arithmetic-sim``) run only when a
route names them, and ``/v1/models`` marks those routes.

The bearer token comes from ``api_key``, else from the variable ``api_key_env`` names, else from
``REBASE_API_KEY`` when it is set, with or without a config file. A server without a token binds
only to a loopback address unless told ``--insecure`` (:func:`check_exposure`).
"""

from __future__ import annotations

import ipaddress
import os
import pathlib
import tomllib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from rebase_agent import RebaseConfig, StrategyName
from rebase_agent.backends import DEFAULT_BACKEND
from rebase_agent.scorers import DEFAULT_CHECK, Check

__all__ = (
    "DEFAULT_KEY_ENV",
    "ConfigError",
    "ForwardTools",
    "RouteConfig",
    "ServerConfig",
    "check_exposure",
    "describe_validation_error",
    "is_loopback",
    "load_config",
)

DEFAULT_KEY_ENV = "REBASE_API_KEY"
"""Read for the bearer token when neither ``api_key`` nor ``api_key_env`` is configured."""


class ConfigError(ValueError):
    """A configuration that cannot be used, in one line that names the field."""


def describe_validation_error(exc: ValidationError) -> str:
    """A pydantic error as one line: ``field.path: message`` (and how many more there are)."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {message}{more}"


class ForwardTools(BaseModel):
    """Where a route sends tool-calling chat turns, unchanged but for the model name.

    A chat request with ``tools``, ``functions``, ``tool_choice`` or a tool message in its
    history is not a search problem: with this set, the route forwards it to an OpenAI-compatible
    ``/chat/completions`` endpoint (the route's policy server, typically) and relays the answer,
    streamed or not, so one base URL serves a whole agent loop.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(min_length=1)
    """The endpoint's base URL, ending in ``/v1``."""
    model: str | None = None
    """The model name the endpoint knows; ``None`` sends the route's name."""
    api_key_env: str | None = None
    """An environment variable holding the endpoint's bearer token (never logged)."""
    timeout_s: float = Field(120.0, gt=0.0)


class RouteConfig(BaseModel):
    """One model name clients can ask for: a backend, a strategy and a search config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = DEFAULT_BACKEND
    """A name from :mod:`rebase_agent.backends`: the embedded Gemma 3 270M by default."""
    options: dict[str, str] = Field(default_factory=dict)
    """Backend options, as ``--option KEY=VALUE`` on the command line."""
    check: Check = DEFAULT_CHECK
    """Multiply the backend's step scores by a tool check (:func:`rebase_agent.with_check`);
    ``none``: the backend's scorer alone."""
    strategy: StrategyName = "rebase"
    search: RebaseConfig = Field(default_factory=RebaseConfig)
    max_budget: int = Field(64, ge=1)
    """Largest ``budget`` a request may ask for."""
    max_balance_temperature: float = Field(10.0, gt=0.0)
    """Largest ``balance_temperature`` a request may ask for."""
    forward_tools: ForwardTools | None = None
    """Forward tool-calling chat turns here; ``None`` refuses them with a 400."""

    @model_validator(mode="after")
    def _default_budget_within_cap(self) -> RouteConfig:
        if self.search.budget > self.max_budget:
            raise ValueError(
                f"search.budget ({self.search.budget}) exceeds max_budget ({self.max_budget})"
            )
        return self


class ServerConfig(BaseModel):
    """Everything ``rebase-agent serve`` (and ``rebase-agent mcp``) needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = None
    """Bearer token every route but ``/health`` requires; prefer ``api_key_env``."""
    api_key_env: str | None = None
    """Name of an environment variable that holds the bearer token (it must be set); without
    it, ``REBASE_API_KEY`` is read when set."""
    max_concurrent_searches: int = Field(4, ge=1)
    """Searches running at once; a request beyond that gets a 429."""
    max_body_bytes: int = Field(1_000_000, ge=1024)
    request_timeout_s: float | None = Field(300.0, gt=0.0)
    """Wall-clock limit of one search (a route's own ``search.timeout_s`` applies when shorter);
    ``None``: no limit."""
    routes: dict[str, RouteConfig] = Field(
        default_factory=lambda: {"rebase-demo": RouteConfig()}, min_length=1
    )

    def bearer_token(self) -> str | None:
        """The token clients must send: ``api_key``, else ``api_key_env``'s variable, else
        ``REBASE_API_KEY`` when set.

        Raises:
            ConfigError: ``api_key_env`` names a variable that is not set.
        """
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            token = os.environ.get(self.api_key_env)
            if not token:
                raise ConfigError(f"api_key_env names {self.api_key_env!r}, which is not set")
            return token
        return os.environ.get(DEFAULT_KEY_ENV) or None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address (only this machine can connect)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, *, insecure: bool) -> None:
    """Refuse to serve beyond loopback without a bearer token, unless ``insecure``.

    Raises:
        ConfigError: ``host`` is not loopback, no token is configured and ``insecure`` is false.
    """
    if token is None and not insecure and not is_loopback(host):
        raise ConfigError(
            f"host {host!r} is reachable from other machines and no API key is set: set "
            f"{DEFAULT_KEY_ENV} (or api_key_env in the config), bind 127.0.0.1, or pass "
            "--insecure to serve without a key"
        )


def load_config(path: str | pathlib.Path) -> ServerConfig:
    """Read a :class:`ServerConfig` from a ``.toml``, ``.yaml`` or ``.yml`` file.

    Raises:
        ConfigError: The file cannot be read or parsed, or a field is invalid; one line that
            names the file and the field.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    data: Any
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    elif path.suffix in {".yaml", ".yml"}:
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError("YAML configs need PyYAML: pip install pyyaml") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            detail = " ".join(str(exc).split())
            raise ConfigError(f"{path}: not valid YAML: {detail}") from exc
    else:
        raise ConfigError(f"config file must end in .toml, .yaml or .yml, got {path.name!r}")
    if data is None:
        data = {}
    try:
        return ServerConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from None
