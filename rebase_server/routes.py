"""Routes as searches: what ``serve`` and ``mcp`` share.

Each route of a :class:`~rebase_server.ServerConfig` becomes one :class:`~rebase_agent.RebaseSearch`
(its backend's recommended search fields under the route's own, as ``solve`` and ``eval`` do), and
a request's settings make a variant of it within the route's caps (:func:`customise`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rebase_agent import Provider, ProviderError, RebaseConfig, RebaseSearch, Scorer, StrategyName
from rebase_agent.backends import aclose, load_backend, prepare, search_defaults
from rebase_agent.scorers import with_check
from rebase_server.config import (
    ConfigError,
    RouteConfig,
    ServerConfig,
    describe_validation_error,
)

__all__ = ("RequestSettings", "SettingError", "build_searches", "customise")


class SettingError(ValueError):
    """A request setting the route does not allow; ``param`` names it."""

    def __init__(self, message: str, *, param: str, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class RequestSettings(BaseModel):
    """What one request may change in its route's search."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    budget: int | None = Field(None, ge=1)
    balance_temperature: float | None = Field(None, gt=0.0)
    strategy: StrategyName | None = None
    temperature: float | None = Field(None, ge=0.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    max_solution_tokens: int | None = Field(None, ge=1)
    """Most tokens in one solution (OpenAI's ``max_tokens``)."""
    names: Mapping[str, str] = Field(default_factory=dict)
    """The request's own name of each setting, for errors (``rebase.budget``, ``max_tokens``)."""


def build_searches(
    config: ServerConfig, backends: Mapping[str, tuple[Provider, Scorer]] | None = None
) -> dict[str, RebaseSearch]:
    """One search per route, from ready-made ``backends`` or from the route's backend.

    Raises:
        ConfigError: A backend is unknown, not installed or refuses its options (one line).
    """
    searches: dict[str, RebaseSearch] = {}
    for name, route in config.routes.items():
        if backends is not None and name in backends:
            provider, scorer = backends[name]
        else:
            try:
                provider, scorer = load_backend(route.backend)(**route.options)
            except LookupError as exc:
                raise ConfigError(f"routes.{name}.backend: {exc}") from None
            except ImportError as exc:
                raise ConfigError(
                    f"routes.{name}.backend: {route.backend!r} is not installed: {exc}"
                ) from None
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"routes.{name}.options: {exc}") from None
            scorer = with_check(scorer, route.check)
        fields = search_defaults(provider) | route.search.model_dump(exclude_unset=True)
        timeouts = [t for t in (fields.get("timeout_s"), config.request_timeout_s) if t]
        if timeouts:
            fields["timeout_s"] = min(timeouts)
        try:
            search_config = RebaseConfig(**fields)
            searches[name] = RebaseSearch(provider, scorer, search_config, strategy=route.strategy)
        except ValidationError as exc:
            raise ConfigError(f"routes.{name}.search: {describe_validation_error(exc)}") from None
    return searches


async def prepare_searches(
    config: ServerConfig, searches: Mapping[str, RebaseSearch]
) -> dict[str, RebaseSearch]:
    """Probe each route's server once (the provider's and the scorer's ``prepare()``, where
    they have one) and rebuild the searches, so that the search fields of a preset the probe
    chose apply under the route's own.

    Raises:
        ConfigError: A route's server cannot run a search: ``routes.NAME: probe: ...``. Every
            route's provider and scorer are closed first.
    """
    for name, search in searches.items():
        try:
            await prepare(search.provider, search.scorer)
        except (ProviderError, ValueError) as exc:  # ValueError: a preset that does not fit
            with anyio.CancelScope(shield=True):
                for each in searches.values():
                    await aclose(each.provider, each.scorer)
            raise ConfigError(f"routes.{name}: {exc}") from None
    ready = {name: (s.provider, s.scorer) for name, s in searches.items()}
    return build_searches(config, ready)


def _solution_cap(config: RebaseConfig, tokens: int) -> dict[str, Any]:
    """Config fields that keep every solution within ``tokens`` tokens."""
    if "max_solution_tokens" in RebaseConfig.model_fields:
        current = getattr(config, "max_solution_tokens", None)
        return {"max_solution_tokens": tokens if current is None else min(current, tokens)}
    # No solution-level limit in the core: a solution has at most max_depth steps of at most
    # max_step_tokens tokens each, so bound both so that their product is within the cap.
    step = min(config.max_step_tokens, tokens)
    return {"max_step_tokens": step, "max_depth": max(1, min(config.max_depth, tokens // step))}


def customise(search: RebaseSearch, route: RouteConfig, settings: RequestSettings) -> RebaseSearch:
    """``search`` with the request's settings, within the route's caps; it shares the route's
    provider, scorer and concurrency limits.

    Raises:
        SettingError: A setting over the route's cap, or one the search config rejects.
    """
    names = dict(settings.names)

    def name(field: str) -> str:
        return names.get(field, field)

    update: dict[str, Any] = {}
    if settings.budget is not None:
        if settings.budget > route.max_budget:
            raise SettingError(
                f"{name('budget')} {settings.budget} is over this model's limit {route.max_budget}",
                param=name("budget"),
                code="budget_too_large",
            )
        update["budget"] = settings.budget
    if settings.balance_temperature is not None:
        if settings.balance_temperature > route.max_balance_temperature:
            raise SettingError(
                f"{name('balance_temperature')} {settings.balance_temperature} is over this "
                f"model's limit {route.max_balance_temperature}",
                param=name("balance_temperature"),
            )
        update["balance_temperature"] = settings.balance_temperature
    for field in ("temperature", "top_p", "seed"):
        value = getattr(settings, field)
        if value is not None:
            update[field] = value
    if settings.max_solution_tokens is not None:
        update |= _solution_cap(search.config, settings.max_solution_tokens)
    strategy = settings.strategy or search.strategy
    if not update and strategy == search.strategy:
        return search
    try:
        config = RebaseConfig(**(search.config.model_dump() | update))
        other = RebaseSearch(
            search.provider,
            search.scorer,
            config,
            strategy=strategy,
            extract_answer=search.extract_answer,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][-1]) if error["loc"] else "strategy"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise SettingError(f"{name(field)}: {message}", param=name(field)) from None
    other.provider_limiter = search.provider_limiter
    other.scorer_limiter = search.scorer_limiter
    return other
