"""Running an evaluation: every problem × strategy × budget, concurrently, resumably.

:func:`run_eval` loads and checks the dataset before sending anything, runs the provider's and
the scorer's ``prepare()`` where they have one (an HTTP server's probe), opens the results file
(reading the rows already there), and runs every search not yet done in one task group: at most
``max_concurrent_problems`` searches at a time, all sharing one provider and one scorer
``CapacityLimiter``. Each finished search is graded and appended to the results file at once.
A search that fails (a provider or scorer error) is not written, so the next run retries it; a
search that times out is written with what it had.

Example::

    settings = EvalSettings(dataset=DatasetSpec(source="gsm8k_test.jsonl", limit=20),
                            output=Path("runs/gsm8k.jsonl"), budgets=[1, 4, 16])
    summary = await run_eval(settings, provider=provider, scorer=scorer)
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import anyio
from pydantic import BaseModel, Field

from rebase_agent.answers import AnswerExtractor, extract_answer
from rebase_agent.backends import prepare
from rebase_agent.evaluation.datasets import LoadedDataset, Problem, load_dataset
from rebase_agent.evaluation.outcomes import grade_result
from rebase_agent.evaluation.results import EvalRow, ResultsError, ResultsWriter
from rebase_agent.evaluation.settings import EvalSettings, SearchUnit
from rebase_agent.exceptions import SearchFailed, SearchTimeout
from rebase_agent.protocols import Provider, Scorer
from rebase_agent.result import SearchResult
from rebase_agent.search import RebaseSearch

__all__ = ("EvalProgress", "EvalSummary", "Failure", "run_eval")

logger = logging.getLogger(__name__)


class Failure(BaseModel):
    """A search that failed and was not written (the next run retries it)."""

    problem_id: str
    strategy: str
    budget: int
    error: str


class EvalSummary(BaseModel):
    """What one call of :func:`run_eval` did."""

    output: str
    problems: int
    searches: int
    """Searches the run asks for in all (problems × units)."""
    already_done: int
    """Searches found finished in the results file and not redone."""
    written: int
    failures: list[Failure] = Field(default_factory=list)
    skipped_rows: int = 0
    """Malformed dataset rows skipped (with ``skip_invalid``)."""


class EvalProgress(Protocol):
    """Receives progress: the CLI's progress bar is one."""

    def begin(self, total_problems: int, done_problems: int, rows: list[EvalRow]) -> None:
        """Called once before the first search, with the rows already finished."""
        ...

    def advance(self, row: EvalRow | None, problem_done: bool) -> None:
        """Called after every search (``row`` is ``None`` when it failed)."""
        ...


async def run_eval(
    settings: EvalSettings,
    *,
    provider: Provider,
    scorer: Scorer,
    progress: EvalProgress | None = None,
    extract: AnswerExtractor = extract_answer,
    dataset: LoadedDataset | None = None,
) -> EvalSummary:
    """Run (or resume) the evaluation that ``settings`` describe.

    Args:
        settings: Dataset, strategies, budgets, search config and output file.
        provider: The policy.
        scorer: The process reward model or verifier.
        progress: Told about every finished search.
        extract: Final-answer extractor for the searches.
        dataset: Problems already loaded (``settings.dataset`` is read when ``None``).

    Raises:
        DatasetError: A malformed dataset row, before any search.
        ProviderError: The provider's ``prepare()`` (a server's probe) found that no search can
            run, before any search.
        ResultsError: The results file belongs to another run, is corrupt, or holds another
            question under a problem's id.
    """
    data = dataset if dataset is not None else load_dataset(settings.dataset)
    await prepare(provider, scorer)
    units = settings.units()
    run = settings.fingerprint()
    with ResultsWriter(settings.output, run) as writer:
        by_id = {p.id: p for p in data.problems}
        for row in writer.rows.values():
            known = by_id.get(row.problem_id)
            if known is not None and known.question != row.question:
                raise ResultsError(
                    f"{settings.output}: problem {row.problem_id!r} has another question there; "
                    "is this the same dataset?"
                )
        todo: dict[str, list[SearchUnit]] = {}
        for problem in data.problems:
            for unit in units:
                if (problem.id, unit.strategy, unit.budget) not in writer.rows:
                    todo.setdefault(problem.id, []).append(unit)
        searches = {
            (u.strategy, u.budget): RebaseSearch(
                provider,
                scorer,
                settings.search_config(u.budget),
                strategy=u.strategy,
                extract_answer=extract,
            )
            for u in units
        }
        first = next(iter(searches.values()))
        for search in searches.values():  # one set of limits across every search
            search.provider_limiter = first.provider_limiter
            search.scorer_limiter = first.scorer_limiter
        summary = EvalSummary(
            output=str(settings.output),
            problems=len(data.problems),
            searches=len(data.problems) * len(units),
            already_done=len(data.problems) * len(units) - sum(map(len, todo.values())),
            written=0,
            skipped_rows=len(data.skipped),
        )
        if progress is not None:
            ids = set(by_id)
            progress.begin(
                len(data.problems),
                len(data.problems) - len(todo),
                [r for r in writer.rows.values() if r.problem_id in ids],
            )
        remaining = {pid: len(us) for pid, us in todo.items()}
        limiter = anyio.CapacityLimiter(settings.max_concurrent_problems)

        async def one(problem: Problem, unit: SearchUnit) -> None:
            async with limiter:
                row = await _search(
                    settings,
                    searches[(unit.strategy, unit.budget)],
                    problem,
                    unit,
                    run,
                    data.name,
                    summary,
                )
                if row is not None:
                    await writer.append(row)
                    summary.written += 1
            remaining[problem.id] -= 1
            if progress is not None:
                progress.advance(row, remaining[problem.id] == 0)

        async with anyio.create_task_group() as tg:
            for problem in data.problems:
                for unit in todo.get(problem.id, []):
                    tg.start_soon(one, problem, unit)
    return summary


async def _count_prompt(search: RebaseSearch, problem: Problem) -> int | None:
    """The provider's count of the problem's prompt (a
    :class:`~rebase_agent.protocols.PromptCounter`), before any compute is spent; ``None``,
    with a warning, when it has none or fails to count."""
    count = getattr(search.provider, "count_prompt_tokens", None)
    if count is None:
        return None
    try:
        return int(await count(problem.question))
    except Exception as exc:  # the search still runs; the report estimates the prompt instead
        logger.warning(
            "could not count the prompt tokens of problem %s (%s: %s); the report will estimate "
            "them from the first requests' reported prompt tokens",
            problem.id,
            type(exc).__name__,
            exc,
        )
        return None


async def _search(
    settings: EvalSettings,
    search: RebaseSearch,
    problem: Problem,
    unit: SearchUnit,
    run: str,
    dataset: str,
    summary: EvalSummary,
) -> EvalRow | None:
    """One search, graded; ``None`` (and a recorded failure) when it failed."""
    started = time.perf_counter()
    problem_prompt = await _count_prompt(search, problem)
    result: SearchResult
    try:
        result = await search.solve(problem.question)
    except SearchTimeout as exc:
        result = exc.partial
    except SearchFailed as exc:
        summary.failures.append(
            Failure(
                problem_id=problem.id,
                strategy=unit.strategy,
                budget=unit.budget,
                error=str(exc.__cause__ or exc),
            )
        )
        return None
    subsample = unit.strategy == "sampling" and len(unit.answers) > 1
    outcomes, grades = await grade_result(
        result,
        problem.gold_answer,
        unit.answers,
        subsample=subsample,
        grade_timeout_s=settings.grade_timeout_s,
    )
    if not settings.keep_trees:
        result = result.model_copy(update={"nodes": []})
    return EvalRow(
        run=run,
        label=settings.run_label(),
        dataset=dataset,
        problem_id=problem.id,
        question=problem.question,
        gold=problem.gold_answer,
        strategy=unit.strategy,
        budget=unit.budget,
        problem_prompt_tokens=problem_prompt,
        outcomes=outcomes,
        grades=grades,
        stopped=result.stopped,
        wall_s=time.perf_counter() - started,
        result=result,
        double=settings.on_double(),
    )
