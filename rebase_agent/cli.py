"""The ``rebase-agent`` command.

``rebase-agent solve "PROBLEM"`` runs one search and prints the answer, the tree's shape and the
usage (``--json`` prints the whole :class:`~rebase_agent.SearchResult`).

Backends (a provider and a scorer) are chosen with ``--backend``. ``scripted`` is the built-in,
in-process one from :mod:`rebase_agent.testing`; plug-in packages add others through the
``rebase_agent.backends`` entry-point group, each entry a factory
``(**options: str) -> (Provider, Scorer)`` that receives the ``--option KEY=VALUE`` pairs. The
core never imports a plug-in: it only looks the entry point up by name.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import anyio
import click
from pydantic import ValidationError

from rebase_agent.config import RebaseConfig
from rebase_agent.exceptions import RebaseError
from rebase_agent.protocols import Provider, Scorer
from rebase_agent.result import SearchResult
from rebase_agent.search import RebaseSearch

__all__ = ("main",)

BACKEND_GROUP = "rebase_agent.backends"
BackendFactory = Callable[..., tuple[Provider, Scorer]]


def _scripted_backend(**options: str) -> tuple[Provider, Scorer]:
    from rebase_agent.testing import ScriptedProvider, ScriptedScorer

    answers = options.get("answers", "42,41,24").split(",")
    provider = ScriptedProvider(depth=int(options.get("depth", "3")), answers=answers)
    return provider, ScriptedScorer(rules={answers[0]: 0.9})


def _backend(name: str) -> BackendFactory:
    if name == "scripted":
        return _scripted_backend
    found = {ep.name: ep for ep in entry_points(group=BACKEND_GROUP)}
    if name not in found:
        known = ", ".join(sorted({"scripted", *found}))
        raise click.BadParameter(
            f"unknown backend {name!r}; known: {known}", param_hint="--backend"
        )
    factory: BackendFactory = found[name].load()
    return factory


def _parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--option")
        options[key] = value
    return options


def _summary(result: SearchResult) -> str:
    usage = result.usage
    shape = " ".join(f"{depth}:{count}" for depth, count in enumerate(result.tree_shape()))
    votes = "; ".join(
        f"{v.answer} ({v.count} votes, weight {v.weight:.2f})" for v in result.votes[:5]
    )
    lines = [
        f"answer: {result.answer if result.answer is not None else '(none)'}",
        f"strategy: {result.strategy}  budget: {result.config.budget}  stopped: {result.stopped}",
        f"tree (depth:nodes): {shape}",
        f"candidates: {len(result.candidates)} finished, {result.unfinished} unfinished",
        f"votes: {votes or '(none)'}",
        f"usage: {usage.provider_requests} provider requests, {usage.prompt_tokens} prompt + "
        f"{usage.completion_tokens} completion tokens; {usage.scorer_calls} scorer calls "
        f"({usage.scored_solutions} solutions, {usage.scorer_prompt_tokens} tokens); "
        f"{usage.wall_s:.2f} s",
    ]
    if result.solution is not None:
        lines += ["", "solution:", result.solution.strip()]
    return "\n".join(lines)


@click.group()
@click.version_option(package_name="rebase-agent")
def main() -> None:
    """REBASE (reward balanced search) over reasoning steps."""


@main.command()
@click.argument("problem")
@click.option("--backend", default="scripted", show_default=True, help="Provider and scorer.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Backend option.")
@click.option(
    "--strategy",
    type=click.Choice(["rebase", "sampling", "beam", "mcts", "dvts"]),
    default="rebase",
    show_default=True,
)
@click.option("--budget", type=int, default=None, help="Samples N (default 16).")
@click.option("--balance-temperature", type=float, default=None, help="T_b (default 0.2).")
@click.option("--max-depth", type=int, default=None, help="Most steps (default 25).")
@click.option("--max-step-tokens", type=int, default=None, help="Tokens per step (default 256).")
@click.option("--temperature", type=float, default=None, help="Sampling temperature (default 1).")
@click.option("--seed", type=int, default=None)
@click.option("--config", "config_json", default=None, help="RebaseConfig fields as JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
def solve(
    problem: str,
    backend: str,
    options: tuple[str, ...],
    strategy: str,
    config_json: str | None,
    as_json: bool,
    **fields: Any,
) -> None:
    """Solve PROBLEM; print the answer, the tree's shape and the usage."""
    settings = json.loads(config_json) if config_json else {}
    settings |= {k: v for k, v in fields.items() if v is not None}
    try:
        config = RebaseConfig(**settings)
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from exc
    provider, scorer = _backend(backend)(**_parse_options(options))
    search = RebaseSearch(provider, scorer, config, strategy=strategy)  # type: ignore[arg-type]
    try:
        result = anyio.run(search.solve, problem)
    except RebaseError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(result.model_dump_json(indent=2) if as_json else _summary(result))
