from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import anyio
import pytest

from rebase_agent import ProviderError, StepCompletion, StepRequest
from rebase_agent.evaluation.datasets import DatasetSpec
from rebase_agent.evaluation.results import ResultsError, ResultsWriter, read_rows
from rebase_agent.evaluation.runner import run_eval
from rebase_agent.evaluation.settings import EvalSettings
from rebase_agent.testing import ScriptedProvider, ScriptedScorer


def _settings(data: Path, out: Path, **kw: object) -> EvalSettings:
    base: dict[str, object] = {
        "dataset": DatasetSpec(source=str(data), limit=4),
        "output": out,
        "budgets": [1, 2, 4],
        "config": {"seed": 0},
        "backend": "scripted",
    }
    return EvalSettings.model_validate(base | kw)


def _keys(out: Path) -> Counter[tuple[str, str, int]]:
    return Counter(r.key for r in read_rows([out]))


@pytest.mark.anyio
async def test_eval_writes_one_graded_row_per_search(gsm8k_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "gsm8k.jsonl"
    settings = _settings(gsm8k_path, out)
    provider = ScriptedProvider(answers=["18", "3", "70000"])
    summary = await run_eval(settings, provider=provider, scorer=ScriptedScorer(rules={"18": 0.9}))
    assert summary.written == summary.searches == 4 * 4  # rebase at 1, 2, 4; sampling at 4
    rows = read_rows([out])
    assert sorted({(r.strategy, r.budget) for r in rows}) == [
        ("rebase", 1),
        ("rebase", 2),
        ("rebase", 4),
        ("sampling", 4),
    ]
    first = next(r for r in rows if r.problem_id == "0" and r.strategy == "rebase")
    assert first.gold == "18" and first.label == "scripted" and first.dataset == "gsm8k_test"
    assert all(r.double for r in rows)  # the scripted backend is a test double
    outcome = first.outcomes[0]
    assert set(outcome.votes) == {"majority", "weighted_majority", "best_of_n"}
    assert outcome.votes["weighted_majority"].answer == first.result.answer
    assert all(g.gold == "18" for g in first.grades)
    assert any(g.answer == "18" and g.correct for r in rows for g in r.grades)
    sampling = [r for r in rows if r.strategy == "sampling"]
    for row in sampling:  # one search answers 1, 2 and 4
        assert [o.budget for o in row.outcomes] == [1, 2, 4]
        assert [o.subsampled for o in row.outcomes] == [True, True, False]
        assert [o.finished for o in row.outcomes] == [1, 2, 4]
        tokens = [o.completion_tokens for o in row.outcomes]
        assert tokens == sorted(tokens) and tokens[-1] == row.result.usage.completion_tokens
        assert row.outcomes[-1].votes["weighted_majority"].answer == row.result.answer
    again = await run_eval(settings, provider=provider, scorer=ScriptedScorer())
    assert again.written == 0 and again.already_done == 16
    assert set(_keys(out).values()) == {1}


class _FailsAfter:
    """Answers the first ``k`` problems it sees, then raises for every other one."""

    def __init__(self, k: int) -> None:
        self.inner = ScriptedProvider(answers=["18", "3"])
        self.k = k
        self.seen: list[str] = []

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        if request.problem not in self.seen:
            self.seen.append(request.problem)
        if self.seen.index(request.problem) >= self.k:
            raise ProviderError("server went away")
        return await self.inner.generate(request)


@pytest.mark.anyio
async def test_failures_are_not_written_and_a_rerun_finishes(
    gsm8k_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.jsonl"
    settings = _settings(gsm8k_path, out, max_concurrent_problems=1)
    first = await run_eval(settings, provider=_FailsAfter(2), scorer=ScriptedScorer())
    assert first.written == 8 and len(first.failures) == 8
    assert "server went away" in first.failures[0].error
    assert {k[0] for k in _keys(out)} == {"0", "1"}
    second = await run_eval(
        settings, provider=ScriptedProvider(answers=["18", "3"]), scorer=ScriptedScorer()
    )
    assert second.already_done == 8 and second.written == 8 and not second.failures
    keys = _keys(out)
    assert len(keys) == 16 and set(keys.values()) == {1}


@pytest.mark.anyio
async def test_a_partial_last_line_is_cut_and_redone(gsm8k_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    settings = _settings(gsm8k_path, out, strategies=["rebase"], budgets=[2])
    await run_eval(settings, provider=ScriptedProvider(), scorer=ScriptedScorer())
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])  # killed
    assert len(read_rows([out])) == 2
    summary = await run_eval(settings, provider=ScriptedProvider(), scorer=ScriptedScorer())
    assert summary.already_done == 2 and summary.written == 2
    assert all(json.loads(line) for line in out.read_text().splitlines())
    assert len(_keys(out)) == 4


@pytest.mark.anyio
async def test_another_run_or_dataset_is_refused(gsm8k_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    settings = _settings(gsm8k_path, out, strategies=["rebase"], budgets=[1])
    await run_eval(settings, provider=ScriptedProvider(), scorer=ScriptedScorer())
    other = _settings(
        gsm8k_path,
        out,
        strategies=["rebase"],
        budgets=[1],
        config={"seed": 0, "balance_temperature": 0.1},
    )
    with pytest.raises(ResultsError, match="another run"):
        await run_eval(other, provider=ScriptedProvider(), scorer=ScriptedScorer())
    lines = out.read_text().splitlines()
    row = json.loads(lines[1])
    row["question"] = "something else"
    out.write_text("\n".join([lines[0], json.dumps(row), *lines[2:]]) + "\n")
    with pytest.raises(ResultsError, match="another question"):
        await run_eval(settings, provider=ScriptedProvider(), scorer=ScriptedScorer())
    with (
        ResultsWriter(out, settings.fingerprint()),
        pytest.raises(ResultsError, match="another run is writing"),
    ):
        ResultsWriter(out, settings.fingerprint())
    out.write_text("garbage\n" + "\n".join(lines) + "\n")
    with pytest.raises(ResultsError, match=":1: not a results row"):
        ResultsWriter(out, settings.fingerprint())


@pytest.mark.anyio
async def test_math500_end_to_end_with_latex_answers(math500_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    settings = _settings(
        math500_path,
        out,
        strategies=["rebase", "beam"],
        budgets=[4],
        keep_trees=False,
        dataset=DatasetSpec(source=str(math500_path), limit=2),
    )
    provider = ScriptedProvider(answers=[r"\left(3, \frac{\pi}{2}\right)", r"\dfrac{14}{3}"])
    summary = await run_eval(settings, provider=provider, scorer=ScriptedScorer())
    assert summary.written == 4
    rows = read_rows([out])
    assert all(not r.result.nodes and r.result.candidates for r in rows)
    first = [r for r in rows if r.problem_id == "0"]
    assert any(g.correct and g.method in ("string", "math_verify") for r in first for g in r.grades)


def test_settings_check_every_budget_config_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="balance_temperature"):
        _settings(tmp_path / "d.jsonl", tmp_path / "o.jsonl", config={"balance_temperature": -1})
    with pytest.raises(ValueError, match="budgets"):
        _settings(tmp_path / "d.jsonl", tmp_path / "o.jsonl", config={"budget": 4})
    s = _settings(tmp_path / "d.jsonl", tmp_path / "o.jsonl", budgets=[4, 1, 4])
    assert s.budgets == [1, 4]
    assert [(u.strategy, u.budget, u.answers) for u in s.units()] == [
        ("rebase", 1, (1,)),
        ("rebase", 4, (4,)),
        ("sampling", 4, (1, 4)),
    ]


@pytest.mark.anyio
async def test_progress_counts_problems_accuracy_and_tokens(
    gsm8k_path: Path, tmp_path: Path
) -> None:
    from rebase_agent.evaluation.progress import ProgressBar

    settings = _settings(gsm8k_path, tmp_path / "r.jsonl")
    bar = ProgressBar(settings, enabled=False)
    provider = ScriptedProvider(answers=["18"])
    await run_eval(settings, provider=provider, scorer=ScriptedScorer(), progress=bar)
    assert bar.done == 4 and bar.total == 4
    assert bar.correct["rebase"] == [1, 4] and bar.correct["sampling"] == [1, 4]  # gold 18 once
    assert bar.tokens == sum(r.result.usage.total_tokens for r in read_rows([tmp_path / "r.jsonl"]))
    bar.close()
    resumed = ProgressBar(settings, enabled=False)
    await run_eval(settings, provider=provider, scorer=ScriptedScorer(), progress=resumed)
    assert resumed.done == 4 and resumed.tokens == bar.tokens and resumed.new_tokens == 0
    resumed.close()


@pytest.mark.anyio
async def test_subsampling_counts_the_problem_prompt_once_in_full() -> None:
    from rebase_agent import RebaseConfig, solve
    from rebase_agent.evaluation.outcomes import grade_result
    from rebase_agent.testing import FunctionProvider

    def policy(request: StepRequest) -> list[StepCompletion]:
        done = len(request.steps) == 1
        text = "The answer is 7" if done else "Step 1: think\n\n"
        prompt = 40 if not request.steps else 10  # shared out evenly over the n completions
        return [
            StepCompletion(
                text=text,
                finish_reason="eos" if done else "step",
                prompt_tokens=prompt // request.n,
                completion_tokens=5,
            )
            for _ in range(request.n)
        ]

    result = await solve(
        "p",
        provider=FunctionProvider(policy),
        scorer=ScriptedScorer(),
        config=RebaseConfig(budget=4, seed=0),
        strategy="sampling",
    )
    outcomes, grades = await grade_result(result, "7", [1, 2, 4], subsample=True)
    assert [o.prompt_tokens for o in outcomes] == [40 + 10, 40 + 20, 40 + 40]
    assert [o.completion_tokens for o in outcomes] == [10, 20, 40]
    assert outcomes[-1].prompt_tokens == result.usage.prompt_tokens
    assert [g.correct for g in grades] == [True]
    assert all(o.votes["majority"].correct for o in outcomes)


class _CountingProvider(ScriptedProvider):
    """Reports prompt tokens as a cached server would (none), but can count the prompt."""

    def __init__(self, fail_on: str | None = None) -> None:
        super().__init__(answers=["18"])
        self.fail_on = fail_on

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        out = await super().generate(request)
        return [c.model_copy(update={"prompt_tokens": 0}) for c in out]

    async def count_prompt_tokens(self, problem: str) -> int:
        if self.fail_on is not None and problem.startswith(self.fail_on):
            raise ProviderError("tokenizer unavailable")
        return 1000 + len(problem.split())


@pytest.mark.anyio
async def test_rows_carry_the_providers_count_of_the_problem_prompt(
    gsm8k_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from rebase_agent.evaluation.report import summarize

    out = tmp_path / "counted.jsonl"
    settings = _settings(gsm8k_path, out, budgets=[2])
    text = await anyio.Path(gsm8k_path).read_text()
    first_question = json.loads(text.splitlines()[0])["question"]
    provider = _CountingProvider(fail_on=first_question[:20])
    with caplog.at_level("WARNING"):
        await run_eval(settings, provider=provider, scorer=ScriptedScorer())
    rows = read_rows([out])
    for row in rows:
        if row.problem_id == "0":  # its count failed: the search still ran, with a warning
            assert row.problem_prompt_tokens is None
        else:
            assert row.problem_prompt_tokens == 1000 + len(row.question.split())
    assert "could not count the prompt tokens of problem 0 (ProviderError" in caplog.text
    # The report prices every request's problem part at the counted length, not at the 0
    # tokens the cached provider reported, and says where it had to estimate.
    summary = summarize(rows)
    cell = next(c for c in summary.cells if c.strategy == "rebase" and c.budget == 2)
    rebase = [r for r in rows if r.strategy == "rebase"]
    # Problem 0 has only the reported first prompt to go by: 0 here.
    expected = [r.outcomes[0].uncached_prompt_tokens(r.problem_prompt_tokens or 0) for r in rebase]
    assert cell.uncached_prompt_tokens == sum(e or 0 for e in expected) / len(rebase)
    assert all(r.problem_prompt_tokens for r in rebase if r.problem_id != "0")
    assert any("1 problem(s) have no counted prompt length" in note for note in summary.notes)
    # The calculator passes the count through, and has none over a provider without one.
    from rebase_agent.calculator import CalculatorProvider

    assert await CalculatorProvider(provider).count_prompt_tokens("a b") == 1002
    assert await CalculatorProvider(ScriptedProvider()).count_prompt_tokens("a b") is None
