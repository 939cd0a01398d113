"""Accuracy against compute: per strategy and budget, for each way of voting, with 95% Wilson
intervals; a printed table, a PNG scaling curve and a JSON summary.

Compute follows the paper: FLOPs ≈ 2 × parameters × tokens, for the policy (and the scorer,
when its parameter count is given; otherwise its tokens are shown but not counted as FLOPs).
The parameter count is given, or read from a GGUF file's tensors with the ``gguf`` package.

Example::

    summary = summarize(read_rows(["runs/gsm8k.jsonl"]), params=7.2e9)
    print(format_table(summary))
    plot_scaling(summary, "gsm8k.png")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from rebase_agent.config import Aggregation
from rebase_agent.evaluation.results import AGGREGATIONS, BudgetOutcome, EvalRow

__all__ = (
    "Cell",
    "ReportSummary",
    "format_table",
    "gguf_parameter_count",
    "plot_scaling",
    "summarize",
    "wilson_interval",
)

_DOUBLE_MARK = " (test double)"

_LABELS: dict[Aggregation, str] = {
    "majority": "majority vote",
    "weighted_majority": "weighted majority vote",
    "best_of_n": "best-of-n",
}


def wilson_interval(correct: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); ``(0, 1)`` when ``n == 0``."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


class Cell(BaseModel):
    """Accuracy of one strategy at one budget under one aggregation."""

    series: str
    """The line it belongs to: the strategy, prefixed by the run label when the rows come from
    several runs, and by the dataset when from several datasets; suffixed ``(test double)``
    for a run on a test double."""
    dataset: str
    label: str
    double: bool = False
    """Its rows come from a test double (no model): the accuracy means nothing."""
    strategy: str
    budget: int
    aggregation: Aggregation
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    policy_tokens: float
    """Mean policy tokens (prompt and completion) per problem."""
    scorer_tokens: float
    """Mean scorer tokens per problem (0 where the scorer reports none)."""
    flops: float | None
    """Mean estimated FLOPs per problem; ``None`` without a parameter count."""

    @property
    def tokens(self) -> float:
        """Mean tokens per problem, policy and scorer."""
        return self.policy_tokens + self.scorer_tokens


class ReportSummary(BaseModel):
    """Every cell, and what the compute estimate assumed."""

    datasets: list[str]
    params: float | None = None
    scorer_params: float | None = None
    cells: list[Cell] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def summarize(
    rows: Sequence[EvalRow], *, params: float | None = None, scorer_params: float | None = None
) -> ReportSummary:
    """Accuracy and mean compute per (dataset, run label, strategy, budget, aggregation).

    A problem counts once per cell: where several searches answer the same budget (a sampling
    run extended to a larger budget), a search at exactly that budget wins, else the largest.
    """
    chosen: dict[tuple[str, str, str, int, str], tuple[tuple[bool, int], BudgetOutcome]] = {}
    for row in rows:
        for outcome in row.outcomes:
            key = (row.dataset, row.label, row.strategy, outcome.budget, row.problem_id)
            rank = (not outcome.subsampled, row.budget)
            if key not in chosen or rank > chosen[key][0]:
                chosen[key] = (rank, outcome)
    groups: dict[tuple[str, str, str, int], list[BudgetOutcome]] = {}
    for (dataset, label, strategy, budget, _), (_, outcome) in chosen.items():
        groups.setdefault((dataset, label, strategy, budget), []).append(outcome)
    datasets = sorted({dataset for dataset, _, _, _ in groups})
    labels = {label for _, label, _, _ in groups}
    doubles = {(row.dataset, row.label) for row in rows if row.double}
    summary = ReportSummary(datasets=datasets, params=params, scorer_params=scorer_params)
    for (dataset, label, strategy, budget), outcomes in sorted(groups.items()):
        series = f"{label}: {strategy}" if len(labels) > 1 else strategy
        series = f"{dataset}: {series}" if len(datasets) > 1 else series
        double = (dataset, label) in doubles
        if double:
            series += _DOUBLE_MARK
        n = len(outcomes)
        policy = sum(o.policy_tokens for o in outcomes) / n
        scorer = sum(o.scorer_tokens for o in outcomes) / n
        flops = None
        if params is not None:
            flops = 2 * params * policy + (2 * scorer_params * scorer if scorer_params else 0.0)
        for aggregation in AGGREGATIONS:
            correct = sum(o.votes[aggregation].correct for o in outcomes)
            low, high = wilson_interval(correct, n)
            summary.cells.append(
                Cell(
                    series=series,
                    dataset=dataset,
                    label=label,
                    double=double,
                    strategy=strategy,
                    budget=budget,
                    aggregation=aggregation,
                    n=n,
                    correct=correct,
                    accuracy=correct / n,
                    ci_low=low,
                    ci_high=high,
                    policy_tokens=policy,
                    scorer_tokens=scorer,
                    flops=flops,
                )
            )
    if doubles:
        summary.notes.append(
            f"lines marked{_DOUBLE_MARK} ran on a test double (no model): their accuracy "
            "means nothing"
        )
    if any(c.scorer_tokens for c in summary.cells) and params is not None and not scorer_params:
        summary.notes.append("scorer tokens are not counted in FLOPs (no scorer parameter count)")
    if len({c.n for c in summary.cells}) > 1:
        summary.notes.append("cells have different numbers of problems (an unfinished run?)")
    return summary


def format_table(summary: ReportSummary) -> str:
    """A plain-text table: one block per aggregation, one line per series and budget."""
    width = max([24, *(len(c.series) for c in summary.cells if c.double)])
    head = f"{'series':<{width}} {'N':>5} {'n':>5} {'acc %':>6} {'95% CI':>13} {'tokens':>10}"
    head += f" {'FLOPs':>9}"
    lines: list[str] = []
    for aggregation in AGGREGATIONS:
        cells = [c for c in summary.cells if c.aggregation == aggregation]
        if not cells:
            continue
        lines += [f"== {_LABELS[aggregation]} ==", head]
        for c in cells:
            ci = f"[{100 * c.ci_low:.1f}, {100 * c.ci_high:.1f}]"
            flops = "-" if c.flops is None else f"{c.flops:.2e}"
            lines.append(
                f"{c.series:<{width}.{width}} {c.budget:>5} {c.n:>5} {100 * c.accuracy:>6.1f} "
                f"{ci:>13} {c.tokens:>10.0f} {flops:>9}"
            )
        lines.append("")
    lines += [f"note: {note}" for note in summary.notes]
    return "\n".join(lines).rstrip() + "\n"


def plot_scaling(summary: ReportSummary, path: str | Path, *, title: str | None = None) -> None:
    """Draw accuracy against compute (log scale; FLOPs, or tokens without a parameter count),
    one panel per aggregation, one line per series with its 95% band, budgets marked.

    Raises:
        RuntimeError: matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError(
            "drawing the curve needs matplotlib (pip install matplotlib, or the `eval` extra)"
        ) from None
    use_flops = summary.params is not None
    fig = Figure(figsize=(5 * len(AGGREGATIONS), 4.2))
    axes = fig.subplots(1, len(AGGREGATIONS), sharey=True, squeeze=False)
    for ax, aggregation in zip(axes[0], AGGREGATIONS, strict=True):
        cells = [c for c in summary.cells if c.aggregation == aggregation]
        for series in dict.fromkeys(c.series for c in cells):
            line = sorted((c for c in cells if c.series == series), key=lambda c: c.budget)
            xs = [max(c.flops or 0.0, 1e-9) if use_flops else max(c.tokens, 1e-9) for c in line]
            ys = [100 * c.accuracy for c in line]
            (drawn,) = ax.plot(xs, ys, marker="o", label=series)
            ax.fill_between(
                xs,
                [100 * c.ci_low for c in line],
                [100 * c.ci_high for c in line],
                color=drawn.get_color(),
                alpha=0.15,
                linewidth=0,
            )
            for x, y, c in zip(xs, ys, line, strict=True):
                ax.annotate(
                    str(c.budget), (x, y), textcoords="offset points", xytext=(3, 4), fontsize=7
                )
        ax.set_xscale("log")
        ax.set_title(_LABELS[aggregation])
        ax.set_xlabel(
            "FLOPs per problem (2 × params × tokens)" if use_flops else "tokens per problem"
        )
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][0].legend(loc="best", fontsize=8)
    fig.suptitle(title or ", ".join(summary.datasets))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def gguf_parameter_count(path: str | Path) -> int:
    """The number of parameters of a GGUF model: the sum of its tensors' element counts.

    Raises:
        RuntimeError: The ``gguf`` package is not installed.
    """
    try:
        from gguf import GGUFReader
    except ImportError:
        raise RuntimeError("reading a GGUF needs the `gguf` package (pip install gguf)") from None
    reader = GGUFReader(str(path))
    return int(sum(int(t.n_elements) for t in reader.tensors))
