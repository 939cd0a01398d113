"""The ``rebase-agent`` command.

``rebase-agent solve "PROBLEM"`` runs one search and prints the answer, the tree's shape and the
usage (``--json`` prints the whole :class:`~rebase_agent.SearchResult`).

Backends (a provider and a scorer) are chosen with ``--backend`` and configured with
``--option KEY=VALUE`` (see :mod:`rebase_agent.backends`). Other packages add commands (``serve``)
through the ``rebase_agent.commands`` entry-point group, so the core never imports them.
"""

from __future__ import annotations

import json
import logging
import sys
from importlib.metadata import entry_points
from typing import Any

import anyio
import click
from pydantic import ValidationError

from rebase_agent._cli_common import backend_factory as _backend
from rebase_agent._cli_common import note_if_double as _note_if_double
from rebase_agent._cli_common import option_pairs as _parse_options
from rebase_agent.backends import DEFAULT_BACKEND, aclose, search_defaults
from rebase_agent.config import RebaseConfig
from rebase_agent.exceptions import RebaseError
from rebase_agent.result import SearchResult
from rebase_agent.scorers import CHECKS, Check, describe, with_check
from rebase_agent.search import RebaseSearch

__all__ = ("main",)


_AGGREGATION_NAMES = {
    "weighted_majority": "weighted by score",
    "majority": "one path, one vote",
    "best_of_n": "best-scored path wins",
}


def _indent(text: str, prefix: str) -> str:
    lines = text.strip().splitlines() or [""]
    return "\n".join([lines[0], *(prefix + line for line in lines[1:])])


def _summary(result: SearchResult, scorer_name: str) -> str:
    """The answer, then why (the winning path with each step's score, and the vote), then the
    search's shape and cost."""
    usage = result.usage
    shape = " ".join(f"{depth}:{count}" for depth, count in enumerate(result.tree_shape()))
    lines = [f"answer: {result.answer if result.answer is not None else '(none)'}", ""]
    chosen = next((c for c in result.candidates if c.node_id == result.chosen), None)
    if chosen is not None:
        lines.append(f"why: the chosen path, each step with its score ({scorer_name})")
        for step, score in zip(chosen.steps, chosen.step_scores, strict=False):
            lines.append(f"  [{score:.2f}] {_indent(step, '         ')}")
    aggregation = _AGGREGATION_NAMES.get(result.config.aggregation, result.config.aggregation)
    lines.append(f"vote ({aggregation}), {len(result.candidates)} finished paths:")
    for vote in result.votes[:6]:
        lines.append(
            f"  {vote.answer}: {vote.count} path{'s' if vote.count != 1 else ''}, "
            f"weight {vote.weight:.2f}, best {vote.best_score:.2f}"
        )
    if len(result.votes) > 6:
        lines.append(f"  ... {len(result.votes) - 6} more answers")
    if not result.votes:
        lines.append("  (no finished path states an answer)")
    lines += [
        "",
        f"search: {result.strategy}, budget {result.config.budget}, "
        f"T_b {result.config.balance_temperature}, stopped: {result.stopped}; "
        f"tree (depth:nodes) {shape}; {result.unfinished} paths unfinished"
        + (f", {usage.failed_expansions} failed expansions" if usage.failed_expansions else ""),
        f"usage: {usage.provider_requests} provider requests, {usage.prompt_tokens} prompt + "
        f"{usage.completion_tokens} completion tokens; {usage.scorer_calls} scorer calls "
        f"({usage.scored_solutions} solutions, {usage.scorer_prompt_tokens} tokens); "
        f"{usage.wall_s:.2f} s",
    ]
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
    default=DEFAULT_BACKEND,
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
@click.option(
    "--check",
    type=click.Choice(CHECKS),
    default="arithmetic",
    show_default=True,
    help="Multiply the backend's step scores by a tool check (arithmetic: every equation a "
    "step writes is verified exactly); none: the backend's scorer alone.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Log what the backends decide (INFO).")
def solve(
    problem: str,
    backend: str,
    options: tuple[str, ...],
    strategy: str,
    config_json: str | None,
    check: Check,
    as_json: bool,
    verbose: bool,
    **fields: Any,
) -> None:
    """Solve PROBLEM; print the answer, why (the chosen path with its step scores, and the
    vote), the tree's shape and the usage."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    settings = json.loads(config_json) if config_json else {}
    settings |= {k: v for k, v in fields.items() if v is not None}
    try:
        RebaseConfig(**settings)  # bad flags fail before any model loads
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from exc
    factory = _backend(backend)
    _note_if_double(backend)
    try:
        provider, scorer = factory(**_parse_options(options))
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc), param_hint="--option") from exc
    except ImportError as exc:
        raise click.ClickException(f"backend {backend!r} is not installed: {exc}") from exc
    scorer = with_check(scorer, check)
    config = RebaseConfig(**(search_defaults(provider) | settings))
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
    click.echo(result.model_dump_json(indent=2) if as_json else _summary(result, describe(scorer)))


def _register_builtin_commands() -> None:
    from rebase_agent.cli_eval import register

    register(main)


_register_builtin_commands()
