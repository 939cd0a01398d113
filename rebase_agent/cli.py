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
import signal
import sys
import time
from collections import Counter
from importlib.metadata import entry_points
from typing import Any

import anyio
import click
from pydantic import ValidationError

from rebase_agent.answers import extract_answer
from rebase_agent.backends import DEFAULT_BACKEND, aclose, search_defaults
from rebase_agent.calculator import calculating
from rebase_agent.commands import backend_factory as _backend
from rebase_agent.commands import note_if_double as _note_if_double
from rebase_agent.commands import option_pairs as _parse_options
from rebase_agent.commands import run_command
from rebase_agent.config import RebaseConfig
from rebase_agent.exceptions import ProviderError, RebaseError, SearchFailed, SearchTimeout
from rebase_agent.protocols import Provider, StepCompletion, StepRequest
from rebase_agent.result import SearchResult
from rebase_agent.scorers import CHECKS, DEFAULT_CHECK, Check, describe, with_check
from rebase_agent.search import RebaseSearch
from rebase_agent.usage import DepthStats

__all__ = ("main",)

DEFAULT_TIMEOUT_S = 600.0
"""``solve``'s wall-clock limit unless ``--timeout`` or the config's ``timeout_s`` says."""
DEFAULT_TOKENS_PER_SAMPLE = 1024
"""``solve``'s generated-token limit is this times the budget unless ``--max-tokens`` says
(the paper's 1024 output tokens per solution, for the N solutions a search may finish)."""
EXIT_INTERRUPTED = 130


class _Watch:
    """Wraps the provider for ``solve``: counts generated tokens, tallies the answers of
    finishing steps (for progress) and stops the search on request (Ctrl-C, the token limit)
    by cancelling its requests in flight and failing new ones, so the search ends with a
    :class:`SearchFailed` that carries everything already paid for."""

    def __init__(self, provider: Provider, *, token_limit: int | None) -> None:
        self.provider = provider
        self.token_limit = token_limit
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.answers: Counter[str] = Counter()
        self.stop_reason: str | None = None
        self._scopes: set[anyio.CancelScope] = set()

    def stop(self, reason: str) -> None:
        """Stop the search: cancel the requests in flight, fail the next ones."""
        if self.stop_reason is None:
            self.stop_reason = reason
        for scope in list(self._scopes):
            scope.cancel()

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        if self.stop_reason is not None:
            raise ProviderError(f"search stopped: {self.stop_reason}")
        got: list[StepCompletion] | None = None
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                got = await self.provider.generate(request)
            finally:
                self._scopes.discard(scope)
        if got is None:
            raise ProviderError(f"search stopped: {self.stop_reason}")
        for completion in got:
            self.prompt_tokens += completion.prompt_tokens
            self.completion_tokens += completion.completion_tokens
            answer = extract_answer(completion.text)
            if answer is None and completion.finish_reason == "eos":
                answer = extract_answer("".join(request.steps) + completion.text)
            if answer is not None:
                self.answers[answer] += 1
        limit = self.token_limit
        if limit is not None and self.completion_tokens >= limit:
            self.stop(f"the token limit: {self.completion_tokens} tokens generated, limit {limit}")
        return got


class _Progress:
    """One stderr line per finished depth: open and finished paths, tokens, time, leader."""

    def __init__(self, watch: _Watch) -> None:
        self.watch = watch
        self.started = time.perf_counter()
        self.finished = 0

    def __call__(self, stats: DepthStats) -> None:
        self.finished += stats.finished
        leader = self.watch.answers.most_common(1)
        lead = (
            f"{leader[0][0]} ({leader[0][1]} of {sum(self.watch.answers.values())})"
            if leader
            else "none yet"
        )
        click.echo(
            f"depth {stats.depth + 1}: {stats.children - stats.finished} open, "
            f"{self.finished} finished; {self.watch.completion_tokens} tokens; "
            f"{time.perf_counter() - self.started:.1f} s; leading answer {lead}",
            err=True,
        )


async def _on_interrupt(watch: _Watch, outer: anyio.CancelScope) -> None:
    """First Ctrl-C: stop the search and keep its partial result; second: quit."""
    try:
        with anyio.open_signal_receiver(signal.SIGINT) as signals:
            presses = 0
            async for _ in signals:
                presses += 1
                if presses > 1:
                    outer.cancel()
                    return
                watch.stop("Ctrl-C")
                click.echo(
                    "\nstopping: the partial result follows (Ctrl-C again to quit)", err=True
                )
    except NotImplementedError:  # pragma: no cover - no signal receiver on this platform
        await anyio.sleep_forever()


_AGGREGATION_NAMES = {
    "weighted_majority": "weighted by score",
    "majority": "one path, one vote",
    "best_of_n": "best-scored path wins",
}


def _indent(text: str, prefix: str) -> str:
    lines = text.strip().splitlines() or [""]
    return "\n".join([lines[0], *(prefix + line for line in lines[1:])])


def _summary(result: SearchResult, scorer_name: str, *, calculator: bool = False) -> str:
    """The answer, then why (the winning path with each step's score, and the vote), then the
    search's shape and cost; ``calculator``: the policy's values after ``=`` came from
    :class:`~rebase_agent.calculator.CalculatorProvider`."""
    usage = result.usage
    shape = " ".join(f"{depth}:{count}" for depth, count in enumerate(result.tree_shape()))
    lines = [f"answer: {result.answer if result.answer is not None else '(none)'}", ""]
    chosen = next((c for c in result.candidates if c.node_id == result.chosen), None)
    if chosen is not None:
        lines.append(f"why: the chosen path, each step with its score ({scorer_name})")
        if calculator:
            lines.append("  (the model wrote each step, a calculator each value after '=')")
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


_COMMAND_EXTRAS = {"probe": "openai", "serve": "server", "mcp": "mcp"}
"""The extra that provides each plug-in command of this distribution."""


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
                    extra = _COMMAND_EXTRAS.get(cmd_name, cmd_name)
                    raise click.ClickException(
                        f"{cmd_name!r} needs what is not installed ({exc}); "
                        f"install it with: python -m pip install 'rebase-agent[{extra}]'"
                    ) from exc
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
    default=DEFAULT_CHECK,
    show_default=True,
    help="Multiply the backend's step scores by a tool check (arithmetic: every equation a "
    "step writes is verified exactly; grounded: that, and every number a step uses comes from "
    "the problem or an earlier step); none: the backend's scorer alone.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=None,
    help=f"Wall-clock limit of the search in seconds (default {DEFAULT_TIMEOUT_S:.0f}, or the "
    "config's timeout_s; 0: none). A search that reaches it prints its partial result.",
)
@click.option(
    "--max-tokens",
    type=int,
    default=None,
    help=f"Stop after this many generated tokens (default {DEFAULT_TOKENS_PER_SAMPLE} × budget; "
    "0: none), printing the partial result.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="One line per depth on stderr (default: on when stdout and stderr are terminals and "
    "not --json).",
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
    timeout_s: float | None,
    max_tokens: int | None,
    progress: bool | None,
    as_json: bool,
    verbose: bool,
    **fields: Any,
) -> None:
    """Solve PROBLEM; print the answer, why (the chosen path with its step scores, and the
    vote), the tree's shape and the usage.

    On a terminal each depth prints a line as it finishes. Ctrl-C stops the search and prints
    the partial result already paid for; so does reaching --timeout or --max-tokens."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    settings = json.loads(config_json) if config_json else {}
    settings |= {k: v for k, v in fields.items() if v is not None}
    if timeout_s is not None and timeout_s < 0:
        raise click.BadParameter(f"must be >= 0, got {timeout_s}", param_hint="--timeout")
    if max_tokens is not None and max_tokens < 0:
        raise click.BadParameter(f"must be >= 0, got {max_tokens}", param_hint="--max-tokens")
    if timeout_s is not None:
        settings["timeout_s"] = timeout_s or None
    elif settings.get("timeout_s") is None and "timeout_s" not in settings:
        settings["timeout_s"] = DEFAULT_TIMEOUT_S
    try:
        RebaseConfig(**settings)  # bad flags fail before any model loads
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from exc
    if progress is None:
        progress = not as_json and sys.stdout.isatty() and sys.stderr.isatty()
    factory = _backend(backend)
    _note_if_double(backend)
    try:
        provider, scorer = factory(**_parse_options(options))
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc), param_hint="--option") from exc
    except ImportError as exc:
        raise click.ClickException(f"backend {backend!r} is not installed: {exc}") from exc
    scorer = with_check(scorer, check)

    watch = _Watch(provider, token_limit=None)

    def build() -> RebaseSearch:
        config = RebaseConfig(**(search_defaults(provider) | settings))
        limit = max_tokens if max_tokens is not None else DEFAULT_TOKENS_PER_SAMPLE * config.budget
        watch.token_limit = limit or None
        return RebaseSearch(watch, scorer, config, strategy=strategy)  # type: ignore[arg-type]

    search = build()  # a bad strategy setting fails before any request
    outcome: dict[str, Any] = {}

    async def run() -> None:
        nonlocal search
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_on_interrupt, watch, tg.cancel_scope)
                try:
                    prepare = getattr(provider, "prepare", None)
                    if prepare is not None:  # e.g. the openai backend's server probe
                        await prepare()
                        search = build()  # with the search fields it recommends now
                    on_round = _Progress(watch) if progress else None
                    outcome["result"] = await search.solve(problem, on_round=on_round)
                except RebaseError as exc:
                    outcome["error"] = exc
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await aclose(provider, scorer)

    run_command(run)
    error = outcome.get("error")
    result: SearchResult | None = outcome.get("result")
    code = 0
    if isinstance(error, SearchFailed):
        result = error.partial
        if watch.stop_reason is not None:
            why = watch.stop_reason
            hint = "" if why == "Ctrl-C" else " (--max-tokens N raises it; 0: no limit)"
            code = EXIT_INTERRUPTED if why == "Ctrl-C" else 1
        elif isinstance(error, SearchTimeout):
            why = f"the time limit: {search.config.timeout_s:g} s"
            hint = " (--timeout S raises it; 0: no limit)"
            code = 1
        else:
            why, hint, code = f"an error: {error}", "", 1
        click.echo(f"stopped by {why}{hint}; the partial result, as paid for:", err=True)
    elif error is not None:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    if result is None:  # quit with a second Ctrl-C
        click.echo("quit before a result", err=True)
        sys.exit(EXIT_INTERRUPTED)
    calculator = calculating(provider)
    summary = _summary(result, describe(scorer), calculator=calculator)
    click.echo(result.model_dump_json(indent=2) if as_json else summary)
    if code:
        sys.exit(code)


def _register_builtin_commands() -> None:
    from rebase_agent.cli_eval import register

    register(main)


_register_builtin_commands()
