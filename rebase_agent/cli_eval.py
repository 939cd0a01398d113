"""The ``eval``, ``report`` and ``show`` commands of ``rebase-agent``.

``register(main)`` adds them to the ``rebase-agent`` group::

    rebase-agent eval ../shared/data/gsm8k_test.jsonl --limit 50 --strategy rebase \\
        --strategy sampling --budgets 1,2,4,8,16 --output runs/gsm8k.jsonl
    rebase-agent report runs/gsm8k.jsonl --params 7.2e9 --png runs/gsm8k.png
    rebase-agent show runs/gsm8k.jsonl --problem 3 --strategy rebase --budget 16 --html t.html
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path
from typing import Any

import anyio
import click
from pydantic import ValidationError

from rebase_agent.backends import DEFAULT_BACKEND, aclose, prepare, search_defaults
from rebase_agent.commands import backend_factory as _backend
from rebase_agent.commands import note_if_double as _note_if_double
from rebase_agent.commands import option_pairs as _parse_options
from rebase_agent.commands import run_command
from rebase_agent.config import StrategyName
from rebase_agent.evaluation.arithmetic import ArithmeticVerifier
from rebase_agent.evaluation.datasets import DatasetError, load_dataset
from rebase_agent.evaluation.progress import ProgressBar
from rebase_agent.evaluation.report import (
    format_table,
    gguf_parameter_count,
    plot_scaling,
    summarize,
)
from rebase_agent.evaluation.results import ResultsError, read_rows
from rebase_agent.evaluation.runner import EvalSummary, run_eval
from rebase_agent.evaluation.settings import EvalSettings, load_settings_file
from rebase_agent.evaluation.tree_view import render_html, render_text
from rebase_agent.exceptions import ProviderError
from rebase_agent.protocols import Provider, Scorer
from rebase_agent.scorers import CHECKS, DEFAULT_CHECK, with_check

__all__ = (
    "build_backend",
    "eval_command",
    "register",
    "report_command",
    "show_command",
)


def build_backend(settings: EvalSettings) -> tuple[Provider, Scorer]:
    """The provider and scorer ``settings`` name (``verifier`` replaces the scorer, ``check``
    multiplies it)."""
    provider, scorer = _backend(settings.backend)(**settings.options)
    if settings.verifier == "arithmetic":
        scorer = ArithmeticVerifier()
    return provider, with_check(scorer, settings.check)


def _split_ints(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise click.BadParameter(f"expected integers like 1,2,4, got {value!r}") from None


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@click.command("eval")
@click.argument("dataset", required=False)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Settings file (TOML or YAML); flags override it.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["gsm8k", "math500", "jsonl"]),
    help="Dataset format (guessed from the file name).",
)
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="KEY=FIELD",
    help="Field mapping: question=, answer=, id=, gold=plain|gsm8k|boxed.",
)
@click.option("--split", default=None, help="Hugging Face split (hf:NAME datasets).")
@click.option("--hf-config", default=None, help="Hugging Face configuration.")
@click.option("--limit", type=int, default=None, help="First N problems only.")
@click.option("--skip-invalid", is_flag=True, default=None, help="Skip malformed rows.")
@click.option(
    "--strategy",
    "strategies",
    multiple=True,
    type=click.Choice(list(typing.get_args(StrategyName))),
    help="Strategy (repeatable; default rebase and sampling).",
)
@click.option("--budgets", default=None, help="Budgets N, e.g. 1,2,4,8,16.")
@click.option(
    "--backend",
    default=None,
    help=f"Provider and scorer (default {DEFAULT_BACKEND}: the embedded Gemma 3 270M).",
)
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Backend option.")
@click.option(
    "--verifier",
    type=click.Choice(["arithmetic"]),
    default=None,
    help="Replace the backend's scorer with a built-in verifier.",
)
@click.option(
    "--check",
    type=click.Choice(CHECKS),
    default=None,
    help=f"Multiply the scorer's step scores by a tool check (default {DEFAULT_CHECK}); none: "
    "the scorer alone.",
)
@click.option(
    "--set",
    "fields_set",
    multiple=True,
    metavar="KEY=VALUE",
    help="RebaseConfig field (value parsed as JSON when it can be).",
)
@click.option("--seed", type=int, default=None)
@click.option("--output", "-o", default=None, help="Results JSONL (resumed when it exists).")
@click.option("--label", default=None, help="Name of this run in reports.")
@click.option("--concurrency", type=int, default=None, help="Searches in flight (default 8).")
@click.option("--trees/--no-trees", default=None, help="Store search trees (default on).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def eval_command(
    dataset: str | None,
    config_file: str | None,
    fmt: str | None,
    fields: tuple[str, ...],
    split: str | None,
    hf_config: str | None,
    limit: int | None,
    skip_invalid: bool | None,
    strategies: tuple[str, ...],
    budgets: str | None,
    backend: str | None,
    options: tuple[str, ...],
    verifier: str | None,
    check: str | None,
    fields_set: tuple[str, ...],
    seed: int | None,
    output: str | None,
    label: str | None,
    concurrency: int | None,
    trees: bool | None,
    progress: bool,
) -> None:
    """Evaluate strategies and budgets on DATASET (a JSONL file or hf:NAME); resumable."""
    try:
        data: dict[str, Any] = load_settings_file(config_file) if config_file else {}
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from exc
    spec = dict(data.get("dataset") or {})
    overrides = {
        "source": dataset,
        "format": fmt,
        "split": split,
        "hf_config": hf_config,
        "limit": limit,
        "skip_invalid": skip_invalid,
    }
    spec |= {k: v for k, v in overrides.items() if v is not None}
    spec["fields"] = dict(spec.get("fields") or {}) | _parse_options(fields, "--field")
    data["dataset"] = spec
    data["options"] = dict(data.get("options") or {}) | _parse_options(options)
    config = dict(data.get("config") or {})
    config |= {k: _json_value(v) for k, v in _parse_options(fields_set, "--set").items()}
    if seed is not None:
        config["seed"] = seed
    data["config"] = config
    flags = {
        "strategies": list(strategies) or None,
        "budgets": _split_ints(budgets),
        "backend": backend,
        "verifier": verifier,
        "check": check,
        "output": output,
        "label": label,
        "max_concurrent_problems": concurrency,
        "keep_trees": trees,
    }
    data |= {k: v for k, v in flags.items() if v is not None}
    if "source" not in spec:
        raise click.UsageError("give a DATASET (or dataset.source in --config)")
    if "output" not in data:
        raise click.UsageError("give --output (or output in --config)")
    try:
        settings = EvalSettings.model_validate(data)
        loaded = load_dataset(settings.dataset)  # every row checked before any compute
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from exc
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from exc
    if loaded.skipped:
        click.echo(
            f"skipped {len(loaded.skipped)} malformed row(s): "
            + ", ".join(f"line {s.line} ({s.reason})" for s in loaded.skipped[:5]),
            err=True,
        )
    _note_if_double(settings.backend)
    provider, scorer = build_backend(settings)
    bars: list[ProgressBar] = []

    async def probe_then_run() -> EvalSummary:
        try:
            try:
                # A server's probe (the openai backend) before any search: a server that cannot
                # run one fails here, and the search fields its preset recommends apply below.
                await prepare(provider, scorer)
            except (ProviderError, ValueError) as exc:  # ValueError: a preset that does not fit
                raise click.ClickException(
                    f"backend {settings.backend!r}: {exc}; no search was run"
                ) from exc
            # The backend's recommended search fields, under the user's own.
            config = search_defaults(provider) | settings.config
            ready = settings.model_copy(update={"config": config})
            bars.append(ProgressBar(ready, progress))
            return await run_eval(
                ready, provider=provider, scorer=scorer, progress=bars[0], dataset=loaded
            )
        finally:
            with anyio.CancelScope(shield=True):
                await aclose(provider, scorer)

    try:
        summary = run_command(probe_then_run)
    except ResultsError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        for bar in bars:
            bar.close()
    click.echo(
        f"{summary.written} search(es) written, {summary.already_done} already done, "
        f"{len(summary.failures)} failed, of {summary.searches} "
        f"({summary.problems} problems) -> {summary.output}"
    )
    if summary.failures:
        for failure in summary.failures[:5]:
            click.echo(
                f"  failed: problem {failure.problem_id} {failure.strategy}@"
                f"{failure.budget}: {failure.error}",
                err=True,
            )
        click.echo("rerun the same command to retry the failed searches", err=True)
        sys.exit(1)


def _parse_count(text: str | None) -> float | None:
    if text is None:
        return None
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
    try:
        if text[-1:].upper() in scale:
            return float(text[:-1]) * scale[text[-1].upper()]
        return float(text)
    except ValueError:
        raise click.BadParameter(f"expected a count like 7e9 or 270M, got {text!r}") from None


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--params", default=None, help="Policy parameters for FLOPs (7e9, 270M).")
@click.option(
    "--gguf",
    "gguf_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Read the policy's parameter count from this GGUF.",
)
@click.option("--scorer-params", default=None, help="Scorer parameters (its FLOPs count too).")
@click.option("--png", default=None, help="Scaling curve (default: RESULTS with .png).")
@click.option(
    "--json", "json_path", default=None, help="JSON summary (default: RESULTS with .summary.json)."
)
@click.option("--no-plot", is_flag=True, help="Skip the PNG.")
@click.option("--title", default=None, help="Plot title.")
@click.option(
    "--baseline",
    default="sampling",
    show_default=True,
    help="The strategy every other one is paired with, on the problems both ran.",
)
def report_command(
    results: tuple[str, ...],
    params: str | None,
    gguf_path: str | None,
    scorer_params: str | None,
    png: str | None,
    json_path: str | None,
    no_plot: bool,
    title: str | None,
    baseline: str,
) -> None:
    """Accuracy per strategy and budget against compute, for each vote and pass@N: table, PNG
    curve, JSON summary."""
    count = _parse_count(params)
    if gguf_path is not None:
        try:
            count = float(gguf_parameter_count(gguf_path))
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from exc
    try:
        rows = read_rows(results)
    except ResultsError as exc:
        raise click.ClickException(str(exc)) from exc
    if not rows:
        raise click.ClickException("no rows in " + ", ".join(results))
    ran = sorted({row.strategy for row in rows})
    if baseline not in ran:
        raise click.BadParameter(
            f"{baseline!r} did not run in these results (they hold {', '.join(ran)})",
            param_hint="--baseline",
        )
    summary = summarize(
        rows, params=count, scorer_params=_parse_count(scorer_params), baseline=baseline
    )
    click.echo(format_table(summary), nl=False)
    first = Path(results[0])
    if first.suffix == ".gz":  # results.jsonl.gz: the outputs are named after results.jsonl
        first = first.with_suffix("")
    out_json = Path(json_path) if json_path else first.with_suffix(".summary.json")
    out_json.write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    click.echo(f"summary: {out_json}")
    if not no_plot:
        out_png = Path(png) if png else first.with_suffix(".png")
        try:
            plot_scaling(summary, out_png, title=title)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"plot: {out_png}")


@click.command("show")
@click.argument("results", type=click.Path(exists=True, dir_okay=False))
@click.option("--problem", "problem_id", required=True, help="Problem id.")
@click.option("--strategy", default=None, help="Strategy, where the file has several.")
@click.option("--budget", type=int, default=None, help="Search budget, where several.")
@click.option("--html", "html_path", default=None, help="Also write a self-contained HTML page.")
@click.option("--width", type=int, default=100, show_default=True, help="Step text width.")
def show_command(
    results: str,
    problem_id: str,
    strategy: str | None,
    budget: int | None,
    html_path: str | None,
    width: int,
) -> None:
    """One problem's search tree, in the terminal (and as HTML with --html)."""
    try:
        rows = [r for r in read_rows([results]) if r.problem_id == problem_id]
    except ResultsError as exc:
        raise click.ClickException(str(exc)) from exc
    rows = [
        r
        for r in rows
        if (strategy is None or r.strategy == strategy) and (budget is None or r.budget == budget)
    ]
    if len(rows) != 1:
        found = ", ".join(f"--strategy {r.strategy} --budget {r.budget}" for r in rows)
        what = f"several searches: {found}" if rows else "no search"
        raise click.UsageError(f"problem {problem_id!r}: {what} in {results}")
    row = rows[0]
    grades = {g.answer: g.correct for g in row.grades if g.answer is not None}
    double = ", a test double" if row.double else ""
    click.echo(f"problem {row.problem_id} ({row.label}{double}), gold {row.gold}")
    click.echo(render_text(row.result, grades=grades, width=width), nl=False)
    if html_path is not None:
        page = render_html(
            row.result,
            grades=grades,
            gold=row.gold,
            title=f"{row.label}: problem {row.problem_id}, {row.strategy}@{row.budget}",
        )
        Path(html_path).write_text(page, encoding="utf-8")
        click.echo(f"html: {html_path}")


def register(group: click.Group) -> None:
    """Add ``eval``, ``report`` and ``show`` to ``group`` (the ``rebase-agent`` command)."""
    group.add_command(eval_command)
    group.add_command(report_command)
    group.add_command(show_command)
