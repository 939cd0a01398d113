"""Accuracy against compute: per strategy and budget, for each way of voting and for pass@N
(some finished solution is right: the ceiling of every vote), with 95% Wilson intervals; a
printed table, a PNG scaling curve and a JSON summary.

Compute is shown on two bases that do not depend on what else ran in the same evaluation:

* generated tokens, the paper's basis (FLOPs ≈ 2 × parameters × generated tokens);
* generated tokens plus the prompt tokens a server without a prompt cache would evaluate: for
  every request, the problem's prompt and the steps it sent (from the search tree; see
  :func:`~rebase_agent.evaluation.outcomes.request_costs`). The problem's prompt length is the
  one the provider counted (``EvalRow.problem_prompt_tokens``, from a
  :class:`~rebase_agent.protocols.PromptCounter`), else the largest first-request prompt any
  search of that problem reported (a lower bound where a prompt cache served part of it; the
  report says how many problems it estimated); either way the same for every strategy and
  budget of that problem.

Where a baseline strategy (sampling, by default) ran on the same problems, every other strategy
is compared with it problem by problem at each budget and aggregation (:class:`Comparison`): the
difference in accuracy with a paired bootstrap 95% interval over problems, the problems each
one alone got right, an exact two-sided sign test on those, and the compute ratio on both bases.

The prompt tokens the provider reported are kept in the JSON (``reported_prompt_tokens``) but
never compared: with a prompt cache shared by every search of a run, one search's count depends
on what ran beside it. The scorer's tokens count as FLOPs when its parameter count is given.
The parameter count is given, or read from a GGUF file's tensors with the ``gguf`` package.

Example::

    summary = summarize(read_rows(["runs/gsm8k.jsonl"]), params=7.2e9)
    print(format_table(summary))
    plot_scaling(summary, "gsm8k.png")
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from rebase_agent.config import Aggregation
from rebase_agent.evaluation.outcomes import any_correct
from rebase_agent.evaluation.results import AGGREGATIONS, BudgetOutcome, EvalRow

__all__ = (
    "MEASURES",
    "Cell",
    "Comparison",
    "Measure",
    "ReportSummary",
    "format_table",
    "gguf_parameter_count",
    "paired_bootstrap",
    "plot_scaling",
    "sign_test",
    "summarize",
    "wilson_interval",
)

_DOUBLE_MARK = " (test double)"

Measure = Aggregation | Literal["any_correct"]
"""What makes a problem count as solved in a cell: the answer an aggregation picked is right,
or (``any_correct``, pass@N) some finished solution's answer is, the ceiling of every
aggregation: below it the search found the answer and the vote missed it."""

MEASURES: tuple[Measure, ...] = (*AGGREGATIONS, "any_correct")

_LABELS: dict[Measure, str] = {
    "majority": "majority vote",
    "weighted_majority": "weighted majority vote",
    "best_of_n": "best-of-n",
    "any_correct": "any finished path right (pass@N)",
}


def _solved(outcome: BudgetOutcome, measure: Measure) -> bool | None:
    if measure == "any_correct":
        return outcome.any_correct
    return outcome.votes[measure].correct


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
    """Accuracy of one strategy at one budget under one aggregation (or pass@N)."""

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
    aggregation: Measure
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    generated_tokens: float
    """Mean generated (completion) tokens of the policy per problem: the paper's basis."""
    uncached_prompt_tokens: float | None
    """Mean prompt tokens per problem a cache-less server would evaluate; ``None`` where rows
    predate request counting."""
    reported_prompt_tokens: float
    """Mean prompt tokens per problem as the provider reported them (cache-dependent)."""
    scorer_tokens: float
    """Mean scorer tokens per problem (0 where the scorer reports none)."""
    flops: float | None
    """Mean FLOPs per problem on the paper's basis, 2 × params × generated tokens (plus the
    scorer's, with its parameter count); ``None`` without a parameter count."""
    flops_with_prompt: float | None
    """The same with the cache-less prompt tokens added."""

    @property
    def policy_tokens(self) -> float | None:
        """Mean policy tokens per problem, generated and cache-less prompt."""
        if self.uncached_prompt_tokens is None:
            return None
        return self.generated_tokens + self.uncached_prompt_tokens


class Comparison(BaseModel):
    """One strategy against the baseline at one budget and aggregation, on the problems both
    answered."""

    dataset: str
    label: str
    strategy: str
    baseline: str
    budget: int
    aggregation: Measure
    n: int
    """Problems both searches answered (the pairs)."""
    difference: float
    """Accuracy of ``strategy`` minus that of ``baseline`` (a fraction: 0.1 is 10 points)."""
    ci_low: float
    ci_high: float
    """Paired bootstrap 95% interval of the difference (percentiles of resampled problems)."""
    only_strategy: int
    """Problems only ``strategy`` got right."""
    only_baseline: int
    """Problems only ``baseline`` got right."""
    p_value: float
    """Exact two-sided sign test (McNemar's) on those discordant problems."""
    generated_ratio: float | None
    """Generated tokens of ``strategy`` over the baseline's (``None`` when the baseline's are 0)."""
    policy_ratio: float | None
    """The same with cache-less prompt tokens added (``None`` where unknown)."""


class ReportSummary(BaseModel):
    """Every cell, the paired comparisons with the baseline, and what the compute estimate
    assumed."""

    datasets: list[str]
    params: float | None = None
    scorer_params: float | None = None
    baseline: str | None = None
    cells: list[Cell] = Field(default_factory=list)
    comparisons: list[Comparison] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def paired_bootstrap(
    a: Sequence[bool], b: Sequence[bool], *, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired problems and its 95% percentile bootstrap interval.

    Problems are resampled with replacement, ``resamples`` times, from a generator seeded with
    ``seed``, so a report is the same every time it is drawn.

    Raises:
        ValueError: ``a`` and ``b`` differ in length, or are empty.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"need two equal, non-empty samples, got {len(a)} and {len(b)}")
    diffs = [int(x) - int(y) for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(resamples))
    low = means[int(0.025 * (resamples - 1))]
    high = means[math.ceil(0.975 * (resamples - 1))]
    return sum(diffs) / n, low, high


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial p-value of ``wins`` against ``losses`` under p = 1/2 (1.0 when
    there are none)."""
    total = wins + losses
    if total == 0:
        return 1.0
    tail: float = sum(math.comb(total, k) for k in range(min(wins, losses) + 1)) / 2**total
    return min(1.0, 2 * tail)


def summarize(
    rows: Sequence[EvalRow],
    *,
    params: float | None = None,
    scorer_params: float | None = None,
    baseline: str | None = "sampling",
) -> ReportSummary:
    """Accuracy and mean compute per (dataset, run label, strategy, budget, aggregation), and
    each strategy paired with ``baseline`` on the same problems (none when ``baseline`` is
    ``None`` or did not run).

    A problem counts once per cell: where several searches answer the same budget (a sampling
    run extended to a larger budget), a search at exactly that budget wins, else the largest.
    """
    chosen: dict[tuple[str, str, str, int, str], tuple[tuple[bool, int], BudgetOutcome]] = {}
    problem_prompt: dict[tuple[str, str], int] = {}
    counted: dict[tuple[str, str], int] = {}  # as the provider counted it, where it could
    for row in rows:
        for outcome in row.outcomes:
            if outcome.any_correct is None:  # a row from before it was recorded
                covered = any_correct(
                    row.result, row.grades, outcome.budget, subsampled=outcome.subsampled
                )
                outcome = outcome.model_copy(update={"any_correct": covered})
            key = (row.dataset, row.label, row.strategy, outcome.budget, row.problem_id)
            rank = (not outcome.subsampled, row.budget)
            if key not in chosen or rank > chosen[key][0]:
                chosen[key] = (rank, outcome)
            if outcome.root_prompt_tokens is not None:
                pkey = (row.dataset, row.problem_id)
                problem_prompt[pkey] = max(problem_prompt.get(pkey, 0), outcome.root_prompt_tokens)
        if row.problem_prompt_tokens is not None:
            pkey = (row.dataset, row.problem_id)
            counted[pkey] = max(counted.get(pkey, 0), row.problem_prompt_tokens)
    estimated = len(set(problem_prompt) - set(counted))
    problem_prompt |= counted
    groups: dict[tuple[str, str, str, int], list[tuple[str, BudgetOutcome]]] = {}
    for (dataset, label, strategy, budget, pid), (_, outcome) in chosen.items():
        groups.setdefault((dataset, label, strategy, budget), []).append((pid, outcome))
    datasets = sorted({dataset for dataset, _, _, _ in groups})
    labels = {label for _, label, _, _ in groups}
    doubles = {(row.dataset, row.label) for row in rows if row.double}
    summary = ReportSummary(datasets=datasets, params=params, scorer_params=scorer_params)
    for (dataset, label, strategy, budget), members in sorted(groups.items()):
        series = f"{label}: {strategy}" if len(labels) > 1 else strategy
        series = f"{dataset}: {series}" if len(datasets) > 1 else series
        double = (dataset, label) in doubles
        if double:
            series += _DOUBLE_MARK
        outcomes = [o for _, o in members]
        n = len(outcomes)
        generated = sum(o.completion_tokens for o in outcomes) / n
        uncached_each = [
            o.uncached_prompt_tokens(problem_prompt.get((dataset, pid), 0)) for pid, o in members
        ]
        uncached = (
            None
            if any(u is None for u in uncached_each)
            else sum(u or 0 for u in uncached_each) / n
        )
        reported = sum(o.prompt_tokens for o in outcomes) / n
        scorer = sum(o.scorer_tokens for o in outcomes) / n
        flops = flops_with_prompt = None
        if params is not None:
            scorer_flops = 2 * scorer_params * scorer if scorer_params else 0.0
            flops = 2 * params * generated + scorer_flops
            if uncached is not None:
                flops_with_prompt = 2 * params * (generated + uncached) + scorer_flops
        for aggregation in MEASURES:
            solved = [_solved(o, aggregation) for o in outcomes]
            if None in solved:  # pass@N of sub-sampled budgets in rows kept without trees
                continue
            correct = sum(map(bool, solved))
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
                    generated_tokens=generated,
                    uncached_prompt_tokens=uncached,
                    reported_prompt_tokens=reported,
                    scorer_tokens=scorer,
                    flops=flops,
                    flops_with_prompt=flops_with_prompt,
                )
            )
    summary.comparisons = _compare(groups, problem_prompt, baseline)
    if summary.comparisons:
        summary.baseline = baseline
    if doubles:
        summary.notes.append(
            f"lines marked{_DOUBLE_MARK} ran on a test double (no model): their accuracy "
            "means nothing"
        )
    if any(c.scorer_tokens for c in summary.cells) and params is not None and not scorer_params:
        summary.notes.append("scorer tokens are not counted in FLOPs (no scorer parameter count)")
    if estimated:
        summary.notes.append(
            f"{estimated} problem(s) have no counted prompt length (a provider without "
            "count_prompt_tokens, or rows written before it): it is estimated as the largest "
            "first-request prompt a search of the problem reported, a lower bound where a "
            "prompt cache served part of it"
        )
    if any(c.uncached_prompt_tokens is None for c in summary.cells):
        summary.notes.append(
            "rows written before requests were counted have no cache-less prompt cost"
        )
    if len({c.n for c in summary.cells}) > 1:
        summary.notes.append("cells have different numbers of problems (an unfinished run?)")
    return summary


def _tokens(
    outcomes: Sequence[tuple[str, BudgetOutcome]],
    problem_prompt: dict[tuple[str, str], int],
    dataset: str,
    *,
    prompt: bool,
) -> float | None:
    """Generated tokens of ``outcomes`` in all, with the cache-less prompt tokens when
    ``prompt`` (``None`` where one of those is unknown)."""
    total = 0.0
    for pid, o in outcomes:
        total += o.completion_tokens
        if prompt:
            cost = o.uncached_prompt_tokens(problem_prompt.get((dataset, pid), 0))
            if cost is None:
                return None
            total += cost
    return total


def _compare(
    groups: dict[tuple[str, str, str, int], list[tuple[str, BudgetOutcome]]],
    problem_prompt: dict[tuple[str, str], int],
    baseline: str | None,
) -> list[Comparison]:
    comparisons: list[Comparison] = []
    if baseline is None:
        return comparisons
    for (dataset, label, strategy, budget), members in sorted(groups.items()):
        base = dict(groups.get((dataset, label, baseline, budget), []))
        if strategy == baseline or not base:
            continue
        pairs = [(pid, o, base[pid]) for pid, o in members if pid in base]
        if not pairs:
            continue

        ours = [(pid, o) for pid, o, _ in pairs]
        theirs = [(pid, b) for pid, _, b in pairs]
        ratios = []
        for prompt in (False, True):
            mine = _tokens(ours, problem_prompt, dataset, prompt=prompt)
            other = _tokens(theirs, problem_prompt, dataset, prompt=prompt)
            ratios.append(None if mine is None or not other else mine / other)
        for aggregation in MEASURES:
            mine_solved = [_solved(o, aggregation) for _, o, _ in pairs]
            base_solved = [_solved(o, aggregation) for _, _, o in pairs]
            if None in mine_solved or None in base_solved:
                continue
            a, b = list(map(bool, mine_solved)), list(map(bool, base_solved))
            difference, low, high = paired_bootstrap(a, b)
            wins = sum(x and not y for x, y in zip(a, b, strict=True))
            losses = sum(y and not x for x, y in zip(a, b, strict=True))
            comparisons.append(
                Comparison(
                    dataset=dataset,
                    label=label,
                    strategy=strategy,
                    baseline=baseline,
                    budget=budget,
                    aggregation=aggregation,
                    n=len(pairs),
                    difference=difference,
                    ci_low=low,
                    ci_high=high,
                    only_strategy=wins,
                    only_baseline=losses,
                    p_value=sign_test(wins, losses),
                    generated_ratio=ratios[0],
                    policy_ratio=ratios[1],
                )
            )
    return comparisons


def _count(value: float | None, width: int, spec: str) -> str:
    return f"{'-' if value is None else format(value, spec):>{width}}"


def format_table(summary: ReportSummary) -> str:
    """A plain-text table: one block per aggregation, one line per series and budget.

    ``generated``: generated tokens per problem (the paper's basis); ``prompt``: the prompt
    tokens a cache-less server would evaluate; FLOPs on the first basis and on both together.
    """
    width = max([24, *(len(c.series) for c in summary.cells if c.double)])
    head = f"{'series':<{width}} {'N':>5} {'n':>5} {'acc %':>6} {'95% CI':>13}"
    head += f" {'generated':>10} {'prompt':>10} {'FLOPs gen':>9} {'FLOPs all':>9}"
    lines: list[str] = []
    for aggregation in MEASURES:
        cells = [c for c in summary.cells if c.aggregation == aggregation]
        if not cells:
            continue
        lines += [f"== {_LABELS[aggregation]} ==", head]
        for c in cells:
            ci = f"[{100 * c.ci_low:.1f}, {100 * c.ci_high:.1f}]"
            prompt = _count(c.uncached_prompt_tokens, 10, ".0f")
            lines.append(
                f"{c.series:<{width}.{width}} {c.budget:>5} {c.n:>5} {100 * c.accuracy:>6.1f} "
                f"{ci:>13} {c.generated_tokens:>10.0f} {prompt} "
                f"{_count(c.flops, 9, '.2e')} {_count(c.flops_with_prompt, 9, '.2e')}"
            )
        lines.append("")
        pairs = [c for c in summary.comparisons if c.aggregation == aggregation]
        if pairs:
            lines.append(
                f"{'paired with ' + (summary.baseline or ''):<{width}} {'N':>5} {'n':>5} "
                f"{'diff':>6} {'95% CI':>13} {'+/-':>7} {'p':>6} {'gen ×':>6} {'all ×':>6}"
            )
            for p in pairs:
                name = f"Δ {p.strategy}"
                if len(summary.datasets) > 1:
                    name = f"{p.dataset}: {name}"
                ci = f"[{100 * p.ci_low:+.1f}, {100 * p.ci_high:+.1f}]"
                lines.append(
                    f"{name:<{width}.{width}} {p.budget:>5} {p.n:>5} {100 * p.difference:>+6.1f} "
                    f"{ci:>13} {f'{p.only_strategy}/{p.only_baseline}':>7} {p.p_value:>6.3f} "
                    f"{_count(p.generated_ratio, 6, '.2f')} {_count(p.policy_ratio, 6, '.2f')}"
                )
            lines.append("")
    lines.append(
        "generated: generated tokens per problem (the paper's basis); prompt: prompt tokens a "
        "server without a prompt cache would evaluate (every request's full prompt)"
    )
    if summary.comparisons:
        lines.append(
            "paired: accuracy difference in points on the problems both answered, paired "
            "bootstrap 95% CI; +/-: problems only the strategy / only the baseline got right; "
            "p: exact sign test on those; gen ×, all ×: compute ratio, generated tokens and "
            "generated + cache-less prompt"
        )
    lines += [f"note: {note}" for note in summary.notes]
    return "\n".join(lines).rstrip() + "\n"


def _x(cell: Cell, basis: str, use_flops: bool) -> float | None:
    if basis == "generated":
        value = cell.flops if use_flops else cell.generated_tokens
    else:
        value = cell.flops_with_prompt if use_flops else cell.policy_tokens
    return None if value is None else max(value, 1e-9)


def plot_scaling(summary: ReportSummary, path: str | Path, *, title: str | None = None) -> None:
    """Draw accuracy against compute (log scale), one panel per aggregation (and pass@N) and
    compute basis, one line per series with its 95% band, budgets marked.

    The top row's compute is generated tokens (the paper's basis), the bottom row's generated
    plus cache-less prompt tokens; as FLOPs with a parameter count, as tokens without.

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
    bases = ("generated", "with_prompt")
    measures = [m for m in MEASURES if any(c.aggregation == m for c in summary.cells)]
    fig = Figure(figsize=(5 * len(measures), 4.2 * len(bases)))
    axes = fig.subplots(len(bases), len(measures), sharey=True, squeeze=False)
    for row, basis in enumerate(bases):
        for ax, aggregation in zip(axes[row], measures, strict=True):
            cells = [c for c in summary.cells if c.aggregation == aggregation]
            for series in dict.fromkeys(c.series for c in cells):
                line = sorted((c for c in cells if c.series == series), key=lambda c: c.budget)
                points = [(x, c) for c in line if (x := _x(c, basis, use_flops)) is not None]
                if not points:
                    continue
                xs = [x for x, _ in points]
                ys = [100 * c.accuracy for _, c in points]
                (drawn,) = ax.plot(xs, ys, marker="o", label=series)
                ax.fill_between(
                    xs,
                    [100 * c.ci_low for _, c in points],
                    [100 * c.ci_high for _, c in points],
                    color=drawn.get_color(),
                    alpha=0.15,
                    linewidth=0,
                )
                for x, y, (_, c) in zip(xs, ys, points, strict=True):
                    ax.annotate(
                        str(c.budget), (x, y), textcoords="offset points", xytext=(3, 4), fontsize=7
                    )
            ax.set_xscale("log")
            ax.set_title(_LABELS[aggregation])
            what = "generated tokens" if basis == "generated" else "generated + cache-less prompt"
            ax.set_xlabel(
                f"FLOPs per problem (2 × params × {what})" if use_flops else f"{what} per problem"
            )
            ax.grid(True, which="both", alpha=0.3)
        axes[row][0].set_ylabel("accuracy (%)")
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
