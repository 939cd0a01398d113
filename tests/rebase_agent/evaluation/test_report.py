from __future__ import annotations

import json
from pathlib import Path

import pytest

from rebase_agent import RebaseConfig, SearchResult, StepCompletion, StepRequest, solve
from rebase_agent.calculator import CalculatorProvider
from rebase_agent.evaluation.outcomes import any_correct, grade_result, subsample_nodes
from rebase_agent.evaluation.report import (
    format_table,
    gguf_parameter_count,
    paired_bootstrap,
    plot_scaling,
    sign_test,
    summarize,
    wilson_interval,
)
from rebase_agent.evaluation.results import BudgetOutcome, EvalRow, VoteOutcome
from rebase_agent.testing import FunctionProvider, ScriptedProvider, ScriptedScorer


def test_wilson_interval_matches_known_values() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _row(pid: str, strategy: str, budget: int, outcomes: list[BudgetOutcome]) -> EvalRow:
    result = SearchResult(
        problem="p",
        strategy="rebase",
        config=RebaseConfig(budget=budget),
        answer=None,
        solution=None,
        chosen=None,
    )
    return EvalRow(
        run="r",
        label="m",
        dataset="d",
        problem_id=pid,
        question="p",
        gold="1",
        strategy=strategy,
        budget=budget,
        outcomes=outcomes,
        stopped="done",
        wall_s=0.0,
        result=result,
    )


def _outcome(
    budget: int,
    right: tuple[bool, bool, bool],
    tokens: int,
    subsampled: bool = False,
    root_prompt: int = 20,
    any_right: bool | None = None,
) -> BudgetOutcome:
    votes = {
        agg: VoteOutcome(answer="1" if ok else "2", correct=ok)
        for agg, ok in zip(("majority", "weighted_majority", "best_of_n"), right, strict=True)
    }
    return BudgetOutcome(
        budget=budget,
        subsampled=subsampled,
        finished=budget,
        prompt_tokens=tokens // 2,
        completion_tokens=tokens - tokens // 2,
        scorer_tokens=10,
        requests=3,
        context_tokens=10,
        root_prompt_tokens=root_prompt,
        votes=votes,
        any_correct=any(right) if any_right is None else any_right,
    )


def _rows() -> list[EvalRow]:
    t, f = True, False
    return [
        _row("a", "rebase", 2, [_outcome(2, (t, t, f), 100)]),
        _row("b", "rebase", 2, [_outcome(2, (f, t, f), 300, root_prompt=30)]),
        # sampling's first requests found the problems' prompts in the cache (0 reported)
        _row(
            "a",
            "sampling",
            2,
            [_outcome(1, (f, f, f), 40, True, 0), _outcome(2, (t, f, t), 80, root_prompt=0)],
        ),
        _row(
            "b",
            "sampling",
            2,
            [_outcome(1, (t, t, t), 60, True, 0), _outcome(2, (t, t, t), 120, root_prompt=0)],
        ),
        # an extended sampling run answers budget 2 again; the search at exactly 2 wins
        _row("a", "sampling", 4, [_outcome(2, (f, f, f), 999, True), _outcome(4, (t, t, t), 160)]),
    ]


def test_report_counts_each_problem_once_with_cache_independent_compute() -> None:
    summary = summarize(_rows(), params=1e9, scorer_params=None)
    cell = {(c.strategy, c.budget, c.aggregation): c for c in summary.cells}
    rebase = cell[("rebase", 2, "weighted_majority")]
    assert (rebase.n, rebase.correct, rebase.accuracy) == (2, 2, 1.0)
    # Generated tokens: (50 + 150) / 2; FLOPs on that basis, the paper's.
    assert rebase.generated_tokens == 100 and rebase.scorer_tokens == 10
    assert rebase.flops == pytest.approx(2 * 1e9 * 100)
    # Cache-less prompt: 3 requests × the problem's prompt (20 for a, 30 for b) + 10 context.
    assert rebase.uncached_prompt_tokens == ((3 * 20 + 10) + (3 * 30 + 10)) / 2
    assert rebase.flops_with_prompt == pytest.approx(2 * 1e9 * (100 + 85))
    assert rebase.reported_prompt_tokens == 100
    assert cell[("rebase", 2, "majority")].accuracy == 0.5
    assert cell[("rebase", 2, "best_of_n")].accuracy == 0.0
    s2 = cell[("sampling", 2, "majority")]
    assert (s2.n, s2.correct, s2.generated_tokens) == (2, 2, 50)  # not the sub-sampled 999 row
    # Its first requests hit a cache, yet the same requests cost the same as REBASE's.
    assert s2.reported_prompt_tokens == 50 and s2.uncached_prompt_tokens == 85
    s1 = cell[("sampling", 1, "best_of_n")]
    assert (s1.n, s1.correct, s1.generated_tokens) == (2, 1, 25)
    s4 = cell[("sampling", 4, "majority")]
    assert s4.n == 1 and (s4.ci_low, s4.ci_high) == wilson_interval(1, 1)
    assert any("different numbers of problems" in n for n in summary.notes)
    assert any("scorer tokens are not counted" in n for n in summary.notes)
    table = format_table(summary)
    assert "== weighted majority vote ==" in table
    assert "rebase                       2     2  100.0" in table
    assert "generated     prompt FLOPs gen FLOPs all" in table
    row = "rebase                       2     2  100.0 [34.2, 100.0]        100         85"
    assert row + "  2.00e+11  3.70e+11" in table
    assert json.loads(summary.model_dump_json())["cells"][0]["series"] == "rebase"


def test_each_strategy_is_paired_with_the_baseline_on_the_problems_both_answered() -> None:
    summary = summarize(_rows())
    assert summary.baseline == "sampling"
    pair = {(c.budget, c.aggregation): c for c in summary.comparisons}
    # Only budget 2 has both: rebase got a, b right (weighted), sampling b only.
    assert set(pair) == {(2, a) for a in ("majority", "weighted_majority", "best_of_n")} | {
        (2, "any_correct")
    }
    weighted = pair[(2, "weighted_majority")]
    assert (weighted.strategy, weighted.baseline, weighted.n) == ("rebase", "sampling", 2)
    assert weighted.difference == 0.5
    assert (weighted.only_strategy, weighted.only_baseline) == (1, 0)
    assert weighted.p_value == 1.0  # one discordant problem proves nothing
    assert (weighted.ci_low, weighted.ci_high) == (0.0, 1.0)
    # Generated tokens 200 against 100; with the cache-less prompts (170 each) 370 against 270.
    assert weighted.generated_ratio == 2.0
    assert weighted.policy_ratio == pytest.approx(370 / 270)
    best = pair[(2, "best_of_n")]
    assert (best.difference, best.only_strategy, best.only_baseline) == (-1.0, 0, 2)
    table = format_table(summary)
    assert "paired with sampling" in table
    assert (
        "Δ rebase                     2     2  +50.0 [+0.0, +100.0]     1/0  1.000   2.00   1.37"
        in table
    )
    assert summarize(_rows(), baseline=None).comparisons == []
    assert summarize(_rows(), baseline="beam").comparisons == []


def test_paired_bootstrap_and_sign_test_match_hand_computed_values() -> None:
    same = [True, False] * 20
    assert paired_bootstrap(same, same) == (0.0, 0.0, 0.0)
    a = [True] * 30 + [False] * 10
    b = [False] * 10 + [True] * 20 + [False] * 10
    diff, low, high = paired_bootstrap(a, b, seed=1)
    assert diff == 0.25  # 10 problems only a got right out of 40
    # sd of the mean of 40 values that are 1 a quarter of the time: sqrt(.25 * .75 / 40) = .068
    assert 0.25 - 2.3 * 0.068 < low < 0.25 - 1.7 * 0.068
    assert 0.25 + 1.7 * 0.068 < high < 0.25 + 2.3 * 0.068
    assert paired_bootstrap(a, b, seed=1) == (diff, low, high)  # seeded: the same every time
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_bootstrap([True], [True, False])
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 0) == pytest.approx(2 / 32)
    assert sign_test(0, 10) == pytest.approx(2 / 1024)
    assert sign_test(3, 3) == 1.0
    assert sign_test(8, 2) == pytest.approx(2 * (1 + 10 + 45) / 1024)


def test_rows_without_request_counts_have_no_cacheless_cost() -> None:
    old = [
        r.model_copy(
            update={"outcomes": [o.model_copy(update={"requests": None}) for o in r.outcomes]}
        )
        for r in _rows()
    ]
    summary = summarize(old, params=1e9)
    assert all(
        c.uncached_prompt_tokens is None and c.flops_with_prompt is None for c in summary.cells
    )
    assert any("no cache-less prompt cost" in n for n in summary.notes)
    lines = [line.split() for line in format_table(summary).splitlines()]
    rebase_lines = [line for line in lines if line and line[0] == "rebase"]
    assert rebase_lines and all(line[-3] == "-" and line[-1] == "-" for line in rebase_lines)


@pytest.mark.anyio
@pytest.mark.parametrize("strategy", ["rebase", "sampling", "beam", "mcts", "dvts"])
async def test_cacheless_prompt_cost_is_every_requests_whole_prompt(strategy: str) -> None:
    # The scripted provider has no cache: it reports every request's whole prompt (problem and
    # steps), so what the tree says a cache-less server evaluates must equal what it reported.
    provider = ScriptedProvider(depth=3)
    result = await solve(
        "What is 6 * 7?",
        provider=provider,
        scorer=ScriptedScorer(),
        config=RebaseConfig(budget=8, seed=2),
        strategy=strategy,  # type: ignore[arg-type]
    )
    (outcome,), _ = await grade_result(result, "42", [8], subsample=False)
    assert outcome.requests == len(provider.requests) == result.usage.provider_requests
    problem_prompt = 5  # "What is 6 * 7?": five words, the scripted provider's tokens
    assert outcome.root_prompt_tokens == problem_prompt
    assert outcome.uncached_prompt_tokens(problem_prompt) == result.usage.prompt_tokens
    assert outcome.completion_tokens == result.usage.completion_tokens


_BACKFILL_SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "count_continuations.py"


def _cacheless_calculating_policy(request: StepRequest) -> list[StepCompletion]:
    """A model that writes each of two steps in three pieces (stopping at "x =" and at "y =",
    where a calculator has no value to write), then its answer; it reports every request's whole
    prompt (problem and steps, one token a word), as a server without a cache evaluates it."""
    solution = "".join(request.steps)
    if solution.endswith("x ="):
        text = " the cost, and y ="
    elif solution.endswith("y ="):
        text = " the rest.\n\n"
    elif solution.count("\n\n") < 2:
        text = f"Step {solution.count(chr(10) * 2) + 1}: let x ="
    else:
        text = "The answer is 7"
    text = next((text[: text.find(s) + len(s)] for s in request.stop if s in text), text)
    prompt = len(request.problem.split()) + len(solution.split())
    return [
        StepCompletion(
            text=text,
            finish_reason="eos" if text.startswith("The answer") else "step",
            prompt_tokens=prompt if i == 0 else 0,  # the request's prompt, counted once
            completion_tokens=len(text.split()),
        )
        for i in range(request.n)
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("strategy", ["rebase", "sampling", "beam", "mcts", "dvts"])
async def test_cacheless_prompt_cost_counts_each_calculator_continuation(strategy: str) -> None:
    # Every step takes three requests of the wrapped provider (its first piece and two
    # continuations); the tree must count each, with the path and the step so far it sent.
    inner = FunctionProvider(_cacheless_calculating_policy)
    result = await solve(
        "What is 6 * 7?",
        provider=CalculatorProvider(inner),
        scorer=ScriptedScorer(),
        config=RebaseConfig(budget=8, seed=2, max_depth=4),
        strategy=strategy,  # type: ignore[arg-type]
    )
    steps = [n for n in result.nodes if n.parent is not None]
    assert sum(n.continuations for n in steps) == 2 * sum(n.step.endswith("\n\n") for n in steps)
    (outcome,), _ = await grade_result(result, "7", [8], subsample=False)
    assert outcome.requests == len(inner.requests) > result.usage.provider_requests
    assert outcome.uncached_prompt_tokens(5) == result.usage.prompt_tokens


@pytest.mark.anyio
async def test_count_continuations_backfills_rows_recorded_without_them() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("count_continuations", _BACKFILL_SCRIPT)
    assert spec is not None and spec.loader is not None
    backfilled = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(backfilled)

    result = await solve(
        "What is 6 * 7?",
        provider=CalculatorProvider(FunctionProvider(_cacheless_calculating_policy)),
        scorer=ScriptedScorer(),
        config=RebaseConfig(budget=4, seed=2, max_depth=4),
        strategy="sampling",
    )
    outcomes, _ = await grade_result(result, "7", [1, 2, 4], subsample=True)
    # The row as it was written before steps counted continuations.
    old = result.model_copy(
        update={
            "nodes": [
                n.model_copy(update={"continuations": 0, "continuation_context_tokens": 0})
                for n in result.nodes
            ]
        }
    )
    before, _ = await grade_result(old, "7", [1, 2, 4], subsample=True)
    nodes = old.model_dump(mode="json")["nodes"]
    for node in nodes:
        del node["continuations"], node["continuation_context_tokens"]
    row = {
        "problem_id": "0",
        "strategy": "sampling",
        "result": {"nodes": nodes},
        "outcomes": [o.model_dump(mode="json") for o in before],
    }
    assert [o["requests"] for o in row["outcomes"]] != [o.requests for o in outcomes]
    assert backfilled.backfill(row, 4)
    # Requests come back exactly; a continuation's tokens, by the share of the step before it.
    assert [o["requests"] for o in row["outcomes"]] == [o.requests for o in outcomes]
    for written, recorded in zip(row["outcomes"], outcomes, strict=True):
        assert (
            abs(written["context_tokens"] - (recorded.context_tokens or 0)) <= written["requests"]
        )
    assert not backfilled.backfill(row, 4)  # nothing left to add
    # Outcomes that are not their tree's are refused, not rewritten.
    for node in nodes:
        node.pop("continuations", None)
        node.pop("continuation_context_tokens", None)
    with pytest.raises(SystemExit, match="not its tree's"):
        backfilled.backfill(row, 4)


@pytest.mark.anyio
async def test_cacheless_prompt_cost_of_a_subsampled_budget_counts_only_its_paths() -> None:
    provider = ScriptedProvider(depth=3)
    result = await solve(
        "p q r",
        provider=provider,
        scorer=ScriptedScorer(),
        config=RebaseConfig(budget=8, seed=2),
        strategy="sampling",
    )
    outcomes, _ = await grade_result(result, "42", [2, 8], subsample=True)
    two = outcomes[0]
    kept = subsample_nodes(result.nodes, 2)
    # The root's request, then one request of n=1 per kept node that got a child.
    expanded = {n.parent for n in result.nodes if n.id in kept and n.parent != 0}
    assert two.requests == 1 + len(expanded)
    whole = [
        r
        for r in provider.requests
        if r.depth == 0
        or r.steps[0] in {n.step for n in result.nodes if n.id in kept and n.parent == 0}
    ]
    assert two.uncached_prompt_tokens(3) == sum(
        3 + sum(len(s.split()) for s in r.steps) for r in whole
    )


def test_png_scaling_curve_is_written_for_both_compute_bases(tmp_path: Path) -> None:
    for params in (None, 7e9):
        png = tmp_path / f"curve-{params}.png"
        plot_scaling(summarize(_rows(), params=params), png, title="test")
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5_000


def test_parameter_count_from_a_gguf_header(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    np = pytest.importorskip("numpy")
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("a", np.zeros((3, 4), dtype=np.float32))
    writer.add_tensor("b", np.zeros((5,), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert gguf_parameter_count(path) == 17


def test_several_runs_and_datasets_are_separate_lines() -> None:
    rows = _rows()
    other = [r.model_copy(update={"label": "big"}) for r in rows[:2]]
    elsewhere = [r.model_copy(update={"dataset": "e"}) for r in rows[:2]]
    summary = summarize([*rows, *other])
    assert {c.series for c in summary.cells} == {"m: rebase", "m: sampling", "big: rebase"}
    summary = summarize([*rows, *elsewhere])
    assert {c.series for c in summary.cells} == {"d: rebase", "d: sampling", "e: rebase"}
    assert summary.datasets == ["d", "e"]
    assert all(c.n == 2 for c in summary.cells if c.strategy == "rebase")


def test_lines_of_a_test_double_are_marked() -> None:
    rows = _rows()
    fake = [r.model_copy(update={"label": "scripted-policy", "double": True}) for r in rows[:2]]
    summary = summarize([*rows, *fake])
    marked = {c.series for c in summary.cells if c.double}
    assert marked == {"scripted-policy: rebase (test double)"}
    assert not any("test double" in c.series for c in summary.cells if not c.double)
    assert any("ran on a test double" in n for n in summary.notes)
    table = format_table(summary)
    assert "scripted-policy: rebase (test double)     2" in table  # never cut off
    assert "note: lines marked (test double) ran on a test double" in table
    assert not any("test double" in n for n in summarize(rows).notes)


@pytest.mark.anyio
async def test_pass_at_n_counts_a_right_answer_the_vote_did_not_pick() -> None:
    # The scorer prefers the wrong answer, so every vote picks 41; pass@N still sees a 42.
    result = await solve(
        "What is 6 * 7?",
        provider=ScriptedProvider(depth=2, answers=("41", "42")),
        scorer=ScriptedScorer(rules={"answer is 41": 0.99, "answer is 42": 0.01}),
        config=RebaseConfig(budget=8, seed=1),
        strategy="sampling",
    )
    answers = [c.answer for c in result.candidates]
    assert "41" in answers and "42" in answers
    budgets = [1, 2, 4, 8]
    outcomes, grades = await grade_result(result, "42", budgets, subsample=True)
    top = outcomes[-1]
    assert not any(v.correct for v in top.votes.values()) and top.any_correct is True
    for outcome in outcomes:  # the first k paths: right if any of their answers is 42
        kept = subsample_nodes(result.nodes, outcome.budget)
        first = [c.answer for c in result.candidates if c.node_id in kept]
        assert outcome.any_correct is ("42" in first)
        # A row written before pass@N was recorded gets the same from its tree.
        recomputed = any_correct(result, grades, outcome.budget, subsampled=outcome.subsampled)
        assert recomputed is outcome.any_correct
    assert any_correct(result.model_copy(update={"nodes": []}), grades, 2, subsampled=True) is None

    row = _row("a", "sampling", 8, [o.model_copy(update={"any_correct": None}) for o in outcomes])
    row = row.model_copy(update={"result": result, "grades": grades})
    cells = {(c.budget, c.aggregation): c for c in summarize([row]).cells}
    for outcome in outcomes:
        assert cells[(outcome.budget, "any_correct")].correct == int(bool(outcome.any_correct))
        weighted = outcome.votes["weighted_majority"].correct
        assert cells[(outcome.budget, "weighted_majority")].correct == int(weighted)
    assert cells[(8, "weighted_majority")].correct == 0 and cells[(8, "any_correct")].correct == 1
    table = format_table(summarize([row]))
    assert "== any finished path right (pass@N) ==" in table
