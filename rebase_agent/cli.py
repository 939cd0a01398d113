"""The ``rebase-agent`` command.

``rebase-agent solve "PROBLEM"`` runs one search and prints the answer, the tree's shape and the
usage (``--json`` prints the whole :class:`~rebase_agent.SearchResult`).

Backends (a provider and a scorer) are chosen with ``--backend`` and configured with
``--option KEY=VALUE`` (see :mod:`rebase_agent.backends`). Other packages add commands (``serve``)
through the ``rebase_agent.commands`` entry-point group, so the core never imports them.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import entry_points
from typing import Any

import anyio
import click
from pydantic import ValidationError

from rebase_agent._cli_common import backend_factory as _backend
from rebase_agent._cli_common import option_pairs as _parse_options
from rebase_agent.backends import aclose
from rebase_agent.config import RebaseConfig
from rebase_agent.exceptions import RebaseError
from rebase_agent.result import SearchResult
from rebase_agent.search import RebaseSearch

__all__ = ("main",)


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
        f"candidates: {len(result.candidates)} finished, {result.unfinished} unfinished"
        + (f", {usage.failed_expansions} failed expansions" if usage.failed_expansions else ""),
        f"votes: {votes or '(none)'}",
        f"usage: {usage.provider_requests} provider requests, {usage.prompt_tokens} prompt + "
        f"{usage.completion_tokens} completion tokens; {usage.scorer_calls} scorer calls "
        f"({usage.scored_solutions} solutions, {usage.scorer_prompt_tokens} tokens); "
        f"{usage.wall_s:.2f} s",
    ]
    if result.solution is not None:
        lines += ["", "solution:", result.solution.strip()]
    return "\n".join(lines)


COMMAND_GROUP = "rebase_agent.commands"


class _PluginGroup(click.Group):
    """A command group that also offers the commands of the ``rebase_agent.commands`` entry
    points, loading each one only when it is run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        plugins = {ep.name for ep in entry_points(group=COMMAND_GROUP)}
        return sorted({*super().list_commands(ctx), *plugins})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        for ep in entry_points(group=COMMAND_GROUP):
            if ep.name == cmd_name:
                try:
                    loaded: click.Command = ep.load()
                except ImportError as exc:
                    raise click.ClickException(str(exc)) from exc
                return loaded
        return None


@click.group(cls=_PluginGroup)
@click.version_option(package_name="rebase-agent")
def main() -> None:
    """REBASE (reward balanced search) over reasoning steps."""


@main.command()
@click.argument("problem")
@click.option(
    "--backend",
    default="llama",
    show_default=True,
    help="Provider and scorer: llama (local Gemma 3 270M by default), openai, scripted, ...",
)
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
    factory = _backend(backend)
    try:
        provider, scorer = factory(**_parse_options(options))
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc), param_hint="--option") from exc
    except ImportError as exc:
        raise click.ClickException(f"backend {backend!r} is not installed: {exc}") from exc
    search = RebaseSearch(provider, scorer, config, strategy=strategy)  # type: ignore[arg-type]

    async def run() -> SearchResult:
        try:
            return await search.solve(problem)
        finally:
            await aclose(provider, scorer)

    try:
        result = anyio.run(run)
    except RebaseError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(result.model_dump_json(indent=2) if as_json else _summary(result))


def _register_builtin_commands() -> None:
    from rebase_agent.cli_eval import register

    register(main)


_register_builtin_commands()
