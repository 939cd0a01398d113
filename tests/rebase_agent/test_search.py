from __future__ import annotations

import math
from collections import Counter
from functools import partial
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint

from rebase_agent import (
    ProviderError,
    RebaseConfig,
    RebaseSearch,
    ScoreRequest,
    ScoringError,
    SearchFailed,
    SearchResult,
    SearchTimeout,
    StepCompletion,
    StepRequest,
    record_scorer_tokens,
    solve,
)
from rebase_agent.testing import FunctionProvider, FunctionScorer, ScriptedProvider, ScriptedScorer

pytestmark = pytest.mark.anyio

STRATEGIES = ["rebase", "sampling", "beam"]


def widths_by_depth(result: SearchResult) -> dict[int, int]:
    totals: Counter[int] = Counter()
    for node in result.nodes:
        totals[node.depth] += node.width
    return dict(totals)


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_every_strategy_solves_end_to_end(strategy: str) -> None:
    provider = ScriptedProvider(depth=4, answers=["42", "41"])
    scorer = ScriptedScorer(rules={"42": 0.95, "41": 0.05})
    config = RebaseConfig(budget=8, seed=3)
    result = await solve(
        "What is 6 * 7?",
        provider=provider,
        scorer=scorer,
        config=config,
        strategy=strategy,  # type: ignore[arg-type]
    )
    assert result.strategy == strategy
    assert result.answer == "42"
    assert result.solution is not None and result.solution.endswith("The answer is 42.")
    assert result.stopped == "done" and result.unfinished == 0
    assert len(result.candidates) == 8  # every sample finished exactly one solution
    assert result.tree_shape() == [1, 8, 8, 8, 8]
    # Every depth spreads exactly the budget that is left.
    assert widths_by_depth(result) == {0: 8, 1: 8, 2: 8, 3: 8, 4: 0}
    assert result.usage.provider_requests == len(provider.requests)
    assert result.usage.scorer_calls == len(scorer.requests)
    assert result.usage.completion_tokens == sum(n.completion_tokens for n in result.nodes)
    assert [d.depth for d in result.usage.depths] == [0, 1, 2, 3]
    assert SearchResult.model_validate_json(result.model_dump_json()) == result


async def test_sampling_keeps_paths_independent_and_beam_keeps_few_beams() -> None:
    provider, scorer = ScriptedProvider(depth=4), ScriptedScorer()
    config = RebaseConfig(budget=8, beam_width=4)
    sampling = await solve(
        "p", provider=provider, scorer=scorer, config=config, strategy="sampling"
    )
    assert [r.n for r in provider.requests] == [8] + [1] * 24
    beam = await solve("p", provider=provider, scorer=scorer, config=config, strategy="beam")
    for depth in (1, 2):
        expanded = [n for n in beam.nodes if n.depth == depth and n.width > 0]
        assert len(expanded) == 2 and all(n.width == 4 for n in expanded)
        best = sorted((n for n in beam.nodes if n.depth == depth), key=lambda n: -n.reward)[:2]
        assert {n.id for n in best} == {n.id for n in expanded}
    assert sampling.usage.completion_tokens > 0 and beam.usage.provider_requests == 1 + 2 + 2 + 2


async def test_rebase_gives_better_nodes_more_children() -> None:
    scorer = ScriptedScorer(rules={"good": 0.9, "bad": 0.1})

    def script(request: StepRequest, index: int) -> str:
        if request.depth == 0:
            return "good start\n\n" if index < 2 else "bad start\n\n"
        return "The answer is 1."

    provider = FunctionProvider(lambda r: [script(r, i) for i in range(r.n)])
    result = await solve("p", provider=provider, scorer=scorer, config=RebaseConfig(budget=8))
    depth1 = [n for n in result.nodes if n.depth == 1]
    good = [n.width for n in depth1 if n.step.startswith("good")]
    bad = [n.width for n in depth1 if n.step.startswith("bad")]
    assert sum(good) == 8 and bad == [0] * 6
    assert all(n.status == "pruned" for n in depth1 if n.step.startswith("bad"))


async def test_finished_nodes_consume_budget() -> None:
    # At depth 1, three of eight children state an answer; the other five go on.
    def steps(request: StepRequest) -> list[str]:
        if request.depth == 0:
            return ["The answer is 3." if i < 3 else "Step 1: go on.\n\n" for i in range(request.n)]
        return ["The answer is 4."] * request.n

    result = await solve(
        "p",
        provider=FunctionProvider(steps),
        scorer=ScriptedScorer(),
        config=RebaseConfig(budget=8),
    )
    assert result.tree_shape() == [1, 8, 5]
    assert [d.budget for d in result.usage.depths] == [8, 5]
    assert [d.finished for d in result.usage.depths] == [3, 5]
    assert len(result.candidates) == 8
    assert {c.answer for c in result.candidates} == {"3", "4"}


async def test_open_nodes_at_the_depth_cap_are_reported_unfinished() -> None:
    provider = ScriptedProvider(depth=100)
    config = RebaseConfig(budget=6, max_depth=3)
    result = await solve("p", provider=provider, scorer=ScriptedScorer(), config=config)
    assert result.stopped == "max_depth"
    assert result.candidates == [] and result.answer is None and result.solution is None
    assert result.unfinished == 6
    assert [n.status for n in result.nodes if n.depth == 3] == ["unfinished"] * 6
    assert max(n.depth for n in result.nodes) == 3


async def test_end_of_output_without_an_answer_finishes_but_never_votes() -> None:
    def steps(request: StepRequest) -> list[StepCompletion | str]:
        return [
            StepCompletion(text="I give up", finish_reason="eos") if i % 2 else "The answer is 5."
            for i in range(request.n)
        ]

    result = await solve("p", provider=FunctionProvider(steps), scorer=ScriptedScorer())
    assert len(result.candidates) == 16
    assert sum(c.answer is None for c in result.candidates) == 8
    assert result.answer == "5" and result.votes[0].count == 8


async def test_answers_in_the_problem_do_not_finish_a_step() -> None:
    problem = "The answer is 7 if you trust the hint. What is 3 + 4?"
    result = await solve(
        problem,
        provider=ScriptedProvider(depth=2),
        scorer=ScriptedScorer(),
        config=RebaseConfig(budget=4),
    )
    assert result.tree_shape() == [1, 4, 4]
    assert all(n.status != "finished" for n in result.nodes if n.depth == 1)


async def test_a_custom_answer_extractor_decides_the_answers_that_vote() -> None:
    provider = FunctionProvider(
        lambda r: ["ANSWER: paris" if i else "ANSWER: Paris" for i in range(r.n)]
    )

    def extract(text: str) -> str | None:
        return text.split("ANSWER:")[1].strip() if "ANSWER:" in text else None

    config = RebaseConfig(budget=4, answer_equivalence="normalized")
    result = await solve(
        "capital?",
        provider=provider,
        scorer=ScriptedScorer(),
        config=config,
        extract_answer=extract,
    )
    assert result.answer in {"paris", "Paris"} and result.votes[0].count == 4


async def test_seeded_searches_are_reproducible() -> None:
    config = RebaseConfig(budget=8, seed=11)

    async def run() -> list[tuple[int, int | None, str]]:
        result = await solve(
            "p", provider=ScriptedProvider(depth=4), scorer=ScriptedScorer(), config=config
        )
        return [(n.id, n.parent, n.step) for n in result.nodes]

    assert await run() == await run()
    other = await solve(
        "p",
        provider=ScriptedProvider(depth=4),
        scorer=ScriptedScorer(),
        config=RebaseConfig(budget=8, seed=12),
    )
    assert [n.step for n in other.nodes] != [step for _, _, step in await run()]


class DepthGatedProvider(ScriptedProvider):
    """Holds every request of depth d until ``gates[d]`` is set; counts requests per depth."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gates: dict[int, anyio.Event] = {}
        self.in_flight_at: Counter[int] = Counter()

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        gate = self.gates.setdefault(request.depth, anyio.Event())
        self.in_flight_at[request.depth] += 1
        try:
            await gate.wait()
        finally:
            self.in_flight_at[request.depth] -= 1
        return await super().generate(request)


@pytest.mark.parametrize("strategy", ["rebase", "sampling"])
async def test_all_expansions_of_a_depth_are_in_flight_at_once(strategy: str) -> None:
    provider = DepthGatedProvider(depth=3)
    # A high balance temperature spreads the budget so that every node gets a child.
    config = RebaseConfig(budget=6, balance_temperature=100.0, rounding="largest_remainder")
    results: list[SearchResult] = []

    async def run() -> None:
        results.append(
            await solve(
                "p", provider=provider, scorer=ScriptedScorer(), config=config, strategy=strategy
            )  # type: ignore[arg-type]
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        for depth, expected in [(0, 1), (1, 6), (2, 6)]:
            # Not one wait_all_tasks_blocked(): a task that just finished, whose done-callback
            # has not run yet, leaves its group's waiter looking blocked. A search that sent the
            # depth's requests one at a time would never get here.
            with anyio.fail_after(10):
                while provider.in_flight_at[depth] < expected:
                    await wait_all_tasks_blocked()
            await wait_all_tasks_blocked()
            assert provider.in_flight_at[depth] == expected
            provider.gates[depth].set()
    assert results[0].tree_shape() == [1, 6, 6, 6]


async def test_children_are_scored_as_soon_as_their_request_returns() -> None:
    slow = anyio.Event()

    async def steps(request: StepRequest) -> list[str]:
        if request.depth == 1 and request.steps[0].startswith("slow"):
            await slow.wait()
        if request.depth == 0:
            return ["slow\n\n", "fast\n\n"]
        return ["The answer is 1."] * request.n

    scorer = ScriptedScorer()
    results: list[SearchResult] = []

    async def run() -> None:
        config = RebaseConfig(budget=2)
        results.append(
            await solve(
                "p",
                provider=FunctionProvider(steps),
                scorer=scorer,
                config=config,
                strategy="sampling",
            )
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await wait_all_tasks_blocked()
        # The slow sibling is still waiting, but the fast one's child is already scored.
        assert [req.solutions for req in scorer.requests][-1] == (("fast\n\n", "The answer is 1."),)
        slow.set()
    assert len(results[0].candidates) == 2


async def test_cancelling_a_search_cancels_every_request_in_flight() -> None:
    gate = anyio.Event()
    provider = ScriptedProvider(depth=3, gate=gate)
    with anyio.move_on_after(5) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(solve, "p", provider=provider, scorer=ScriptedScorer()))
            await wait_all_tasks_blocked()
            assert provider.in_flight == 1
            tg.cancel_scope.cancel()
    assert not scope.cancelled_caught
    assert provider.cancelled == 1 and provider.in_flight == 0


async def test_timeout_raises_with_the_partial_result() -> None:
    provider = DepthGatedProvider(depth=4)
    provider.gates[0] = anyio.Event()
    provider.gates[0].set()  # depth 0 answers, depth 1 hangs forever
    config = RebaseConfig(budget=4, timeout_s=0.2)
    with pytest.raises(SearchTimeout) as info:
        await solve("p", provider=provider, scorer=ScriptedScorer(), config=config)
    result = info.value.partial
    assert result.stopped == "timeout"
    assert result.tree_shape() == [1, 4]  # the paid-for first depth is kept
    # Nodes whose expansion was cut off are the open paths; pruned ones were dropped.
    cut = [n for n in result.nodes if n.depth == 1 and n.width > 0]
    assert [n.status for n in cut] == ["unfinished"] * len(cut) and result.unfinished == len(cut)
    assert provider.in_flight_at[1] == 0


async def test_a_failing_provider_fails_loudly_and_keeps_what_was_paid_for() -> None:
    def steps(request: StepRequest) -> list[str]:
        if request.depth == 2:
            raise ProviderError("backend exploded")
        return [f"Step {request.depth + 1}.\n\n"] * request.n

    with pytest.raises(SearchFailed, match="backend exploded") as info:
        await solve(
            "p",
            provider=FunctionProvider(steps),
            scorer=ScriptedScorer(),
            config=RebaseConfig(budget=4),
        )
    assert isinstance(info.value.__cause__, ProviderError)
    result = info.value.partial
    assert result.stopped == "error" and result.tree_shape() == [1, 4, 4]
    assert result.usage.provider_requests >= 2


async def test_wrong_number_of_completions_is_an_error() -> None:
    with pytest.raises(SearchFailed) as info:
        await solve("p", provider=FunctionProvider(lambda r: ["x\n\n"]), scorer=ScriptedScorer())
    assert isinstance(info.value.__cause__, ProviderError)
    assert "returned 1 completions for n=16" in str(info.value.__cause__)


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        (lambda r: [], "returned 0 score lists for 16 solutions"),
        (lambda r: [[]] * len(r.solutions), "returned 0 scores for solution 0"),
        (lambda r: [[math.nan]] * len(r.solutions), "non-finite"),
    ],
)
async def test_malformed_scores_are_an_error(scores: Any, message: str) -> None:
    with pytest.raises(SearchFailed) as info:
        await solve("p", provider=ScriptedProvider(), scorer=FunctionScorer(scores))
    assert isinstance(info.value.__cause__, ScoringError)
    assert message in str(info.value.__cause__)


async def test_scorer_token_usage_is_counted() -> None:
    def scores(request: ScoreRequest) -> list[list[float]]:
        record_scorer_tokens(10, 1)
        return [[0.5] * len(s) for s in request.solutions]

    result = await solve("p", provider=ScriptedProvider(depth=2), scorer=FunctionScorer(scores))
    assert result.usage.scorer_prompt_tokens == 10 * result.usage.scorer_calls
    assert result.usage.scorer_completion_tokens == result.usage.scorer_calls
    assert result.usage.total_tokens > result.usage.completion_tokens


async def test_many_problems_share_the_concurrency_limits() -> None:
    provider = ScriptedProvider(depth=3, latency=0.01)
    search = RebaseSearch(
        provider, ScriptedScorer(), RebaseConfig(budget=4, max_concurrent_requests=3)
    )
    results = await search.solve_many([f"problem {i}" for i in range(6)], max_concurrent=6)
    assert [r.problem for r in results] == [f"problem {i}" for i in range(6)]
    assert provider.max_in_flight == 3


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"budget": 0}, "budget"),
        ({"temperature": -0.5}, "temperature"),
        ({"balance_temperature": 0}, "balance_temperature"),
        ({"rounding": "round"}, "rounding"),
        ({"step_delimiters": []}, "step_delimiters"),
        ({"truncation_ratio": 1.5}, "truncation_ratio"),
        ({"max_solution_tokens": 0}, "max_solution_tokens"),
        ({"max_solution_tokens": "lots"}, "max_solution_tokens"),
        ({"budgett": 3}, "budgett"),
    ],
)
def test_bad_configs_name_the_field(fields: dict[str, Any], name: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        RebaseConfig(**fields)
    assert info.value.errors()[0]["loc"] == (name,)
    assert repr(next(iter(fields.values())))[:3] in str(info.value)


async def test_bad_arguments_fail_before_any_request() -> None:
    from pydantic import ValidationError

    provider = ScriptedProvider()
    with pytest.raises(ValidationError, match="strategy") as info:
        await solve("p", provider=provider, scorer=ScriptedScorer(), strategy="mcts-ish")  # type: ignore[arg-type]
    assert "mcts-ish" in str(info.value)
    with pytest.raises(ValidationError, match="scorer"):
        await solve("p", provider=provider, scorer=object())  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="problem"):
        await solve("", provider=provider, scorer=ScriptedScorer())
    assert provider.requests == []
    await checkpoint()


async def test_solve_many_can_keep_going_past_a_failed_problem() -> None:
    def steps(request: StepRequest) -> list[str]:
        if request.problem == "bad":
            raise ProviderError("no")
        return ["The answer is 1."] * request.n

    search = RebaseSearch(FunctionProvider(steps), ScriptedScorer(), RebaseConfig(budget=2))
    results = await search.solve_many(["a", "bad", "c"], return_exceptions=True)
    assert isinstance(results[1], SearchFailed) and results[1].partial.problem == "bad"
    assert [r.answer for r in (results[0], results[2]) if isinstance(r, SearchResult)] == ["1", "1"]
    with pytest.raises(SearchFailed, match="no"):
        await search.solve_many(["a", "bad", "c"])


async def test_on_round_reports_every_round_as_it_ends() -> None:
    seen: list[tuple[int, int, int]] = []
    result = await solve(
        "p",
        provider=ScriptedProvider(depth=3),
        scorer=ScriptedScorer(),
        config=RebaseConfig(budget=4),
        on_round=lambda s: seen.append((s.depth, s.children, s.finished)),
    )
    assert seen == [(d.depth, d.children, d.finished) for d in result.usage.depths]
    assert seen == [(0, 4, 0), (1, 4, 0), (2, 4, 4)]


async def test_with_config_shares_limits_and_validates() -> None:
    from pydantic import ValidationError

    search = RebaseSearch(
        ScriptedProvider(), ScriptedScorer(), RebaseConfig(budget=8, beam_width=4)
    )
    other = search.with_config(search.config.model_copy(update={"budget": 4}))
    assert other.provider_limiter is search.provider_limiter
    assert other.scorer_limiter is search.scorer_limiter
    assert (await other.solve("p")).config.budget == 4
    dvts = RebaseSearch(
        ScriptedProvider(), ScriptedScorer(), RebaseConfig(budget=8), strategy="dvts"
    )
    with pytest.raises(ValidationError, match="multiple of beam_width"):
        dvts.with_config(RebaseConfig(budget=6))


async def test_a_failed_sampling_path_ends_and_no_other_path_gets_its_sample() -> None:
    def steps(request: StepRequest) -> list[str]:
        if request.depth == 0:
            return [f"start {i}\n\n" for i in range(request.n)]
        if request.steps[0] == "start 0\n\n":
            raise ProviderError("replica 2 is down")
        if request.depth == 1:
            return ["go on\n\n"] * request.n
        return ["The answer is 7."] * request.n

    provider = FunctionProvider(steps)
    result = await solve(
        "p",
        provider=provider,
        scorer=ScriptedScorer(),
        config=RebaseConfig(budget=4),
        strategy="sampling",
    )
    failed = [n for n in result.nodes if n.status == "failed"]
    assert [n.step for n in failed] == ["start 0\n\n"]
    assert failed[0].error == "ProviderError: replica 2 is down"
    assert result.usage.failed_expansions == 1 and result.usage.depths[1].failed == 1
    # Every path after the root is one request of n=1: the three survivors stay independent
    # samples, and the failed path's sample is reported lost, not given to a survivor.
    assert [r.n for r in provider.requests] == [4] + [1] * (4 + 3)
    assert all(n.width <= 1 for n in result.nodes if n.depth >= 1)
    assert result.usage.depths[2].budget == 3 and len(result.candidates) == 3
    assert result.answer == "7" and result.unfinished == 0


async def test_tokens_of_an_expansion_that_then_fails_stay_in_the_usage() -> None:
    def steps(request: StepRequest) -> list[StepCompletion]:
        if request.depth == 0:
            texts = [f"start {i}\n\n" for i in range(request.n)]
        elif request.steps[0] == "start 0\n\n":
            texts = ["one\n\n", "too many\n\n"]  # two completions for n=1: an error
        else:
            texts = ["The answer is 7."] * request.n
        return [
            StepCompletion(
                text=t,
                finish_reason="step" if t.endswith("\n\n") else "eos",
                prompt_tokens=3,
                completion_tokens=5,
            )
            for t in texts
        ]

    result = await solve(
        "p",
        provider=FunctionProvider(steps),
        scorer=ScriptedScorer(),
        config=RebaseConfig(budget=3),
        strategy="sampling",
    )
    assert result.usage.failed_expansions == 1
    in_tree = sum(n.completion_tokens for n in result.nodes)
    assert result.usage.completion_tokens == in_tree + 2 * 5  # the bad response was paid for
    assert result.usage.prompt_tokens == sum(n.prompt_tokens for n in result.nodes) + 2 * 3


async def test_a_failed_scoring_drops_that_requests_children() -> None:
    def scores(request: ScoreRequest) -> list[list[float]]:
        if any(s[-1].startswith("bad") for s in request.solutions):
            raise ScoringError("PRM timed out")
        return [[0.5] * len(s) for s in request.solutions]

    def steps(request: StepRequest) -> list[str]:
        if request.depth == 0:
            return ["a\n\n", "b\n\n"]
        return ["bad step\n\n" if request.steps[0] == "a\n\n" else "The answer is 2."] * request.n

    config = RebaseConfig(budget=2, balance_temperature=100.0, rounding="largest_remainder")
    result = await solve(
        "p", provider=FunctionProvider(steps), scorer=FunctionScorer(scores), config=config
    )
    by_step = {n.step: n for n in result.nodes}
    assert by_step["a\n\n"].status == "failed" and by_step["bad step\n\n"].status == "failed"
    assert result.usage.failed_expansions == 1 and result.answer == "2"
    assert result.usage.completion_tokens == sum(n.completion_tokens for n in result.nodes)


ALL_STRATEGIES = ["rebase", "sampling", "beam", "mcts", "dvts"]


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
async def test_an_answer_phrase_inside_reasoning_does_not_finish_a_path(strategy: str) -> None:
    def steps(request: StepRequest) -> list[str]:
        if request.depth == 0:
            return ["Step 1: First we check whether the answer is positive.\n\n"] * request.n
        return ["Step 2: It is, so the answer is 5."] * request.n

    result = await solve(
        "p",
        provider=FunctionProvider(steps),
        scorer=ScriptedScorer(),
        config=RebaseConfig(budget=4, seed=0),
        strategy=strategy,  # type: ignore[arg-type]
    )
    assert all(n.status != "finished" for n in result.nodes if n.depth == 1)
    assert result.candidates and all(len(c.steps) == 2 for c in result.candidates)
    assert {c.answer for c in result.candidates} == {"5"} and result.answer == "5"


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
async def test_an_empty_step_ends_its_path_instead_of_looping_to_max_depth(strategy: str) -> None:
    provider = FunctionProvider(lambda r: [" \n\n"] * r.n)  # the delimiter, and nothing else
    result = await solve(
        "p",
        provider=provider,
        scorer=ScriptedScorer(),
        config=RebaseConfig(budget=4, max_depth=10),
        strategy=strategy,  # type: ignore[arg-type]
    )
    assert max(n.depth for n in result.nodes) == 1
    assert all(n.status == "finished" and n.answer is None for n in result.nodes if n.depth == 1)
    assert result.answer is None and result.unfinished == 0


def capped_provider(step_tokens: int, answer_at: int | None = None) -> FunctionProvider:
    """Writes steps of ``step_tokens`` tokens (fewer when ``max_tokens`` says so, then cut at
    the limit); the step at depth ``answer_at`` states an answer."""

    def steps(request: StepRequest) -> list[StepCompletion]:
        tokens = min(step_tokens, request.max_tokens)
        if answer_at is not None and request.depth + 1 == answer_at:
            text, reason = "The answer is 3.\n\n", "step"
        else:
            text, reason = f"thinking {request.depth}\n\n", "step"
        if tokens < step_tokens:
            reason = "length"
        return [
            StepCompletion(text=text, finish_reason=reason, completion_tokens=tokens)  # type: ignore[arg-type]
            for _ in range(request.n)
        ]

    return FunctionProvider(steps)


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
async def test_max_solution_tokens_clips_each_step_and_ends_the_path(strategy: str) -> None:
    provider = capped_provider(step_tokens=10)
    config = RebaseConfig(budget=4, max_step_tokens=10, max_solution_tokens=25, max_depth=20)
    result = await solve(
        "p",
        provider=provider,
        scorer=ScriptedScorer(),
        config=config,
        strategy=strategy,  # type: ignore[arg-type]
    )
    # Paths hold 10 + 10 + 5 tokens: the third request asks for only the 5 left.
    assert sorted({r.max_tokens for r in provider.requests}) == [5, 10]
    for request in provider.requests:
        assert request.max_tokens == min(10, 25 - 10 * request.depth)
    nodes = {n.id: n for n in result.nodes}
    for node in result.nodes:
        path, walk = 0, node
        while walk.parent is not None:
            path += walk.completion_tokens
            walk = nodes[walk.parent]
        assert path <= 25
    capped = [n for n in result.nodes if n.depth == 3]
    assert capped and all(n.status == "unfinished" for n in capped)
    assert max(n.depth for n in result.nodes) == 3
    assert result.candidates == [] and result.answer is None


async def test_a_path_that_reaches_max_solution_tokens_with_an_answer_is_finished() -> None:
    config = RebaseConfig(budget=4, max_step_tokens=10, max_solution_tokens=25)
    result = await solve(
        "p",
        provider=capped_provider(step_tokens=10, answer_at=3),
        scorer=ScriptedScorer(),
        config=config,
    )
    assert len(result.candidates) == 4 and result.answer == "3"
    # The capped paths spent their samples: REBASE's budget at each depth never grew.
    assert [d.budget for d in result.usage.depths] == [4, 4, 4]


async def test_without_max_solution_tokens_only_the_step_limit_applies() -> None:
    provider = capped_provider(step_tokens=10)
    config = RebaseConfig(budget=2, max_step_tokens=10, max_solution_tokens=None, max_depth=6)
    result = await solve("p", provider=provider, scorer=ScriptedScorer(), config=config)
    assert {r.max_tokens for r in provider.requests} == {10}
    assert result.stopped == "max_depth" and max(n.depth for n in result.nodes) == 6


def four_first_steps(request: StepRequest) -> list[str]:
    if request.depth == 0:
        return ["a\n\n", "b\n\n", "c\n\n", "d\n\n"][: request.n]
    return ["The answer is 1."] * request.n


FIRST_STEP_SCORES = {"a": 0.9, "b": 0.8, "c": 0.6, "d": 0.3}


async def depth1_widths(strategy: str, **config: Any) -> dict[str, int]:
    result = await solve(
        "p",
        provider=FunctionProvider(four_first_steps),
        scorer=ScriptedScorer(rules=FIRST_STEP_SCORES),
        config=RebaseConfig(budget=4, **config),
        strategy=strategy,  # type: ignore[arg-type]
    )
    return {n.step.strip(): n.width for n in result.nodes if n.depth == 1}


@pytest.mark.parametrize(
    ("config", "widths"),
    [
        # exp((R - 0.9) / 0.2) = 1, 0.607, 0.223, 0.050 (sum 1.879): ceil(4 × 1/1.879) = 3, then
        # ceil(1 × 0.607/0.879) = 1, and nothing is left.
        ({}, {"a": 3, "b": 1, "c": 0, "d": 0}),
        # 4 × softmax = 2.13, 1.29, 0.47, 0.11: floors 2, 1, 0, 0; the unit left goes to .47.
        ({"rounding": "largest_remainder"}, {"a": 2, "b": 1, "c": 1, "d": 0}),
        # Only the best ceil(0.5 × 4) = 2 take part: 4 × (0.622, 0.378) = 2.49, 1.51 -> 2, 2.
        (
            {"rounding": "largest_remainder", "truncation_ratio": 0.5},
            {"a": 2, "b": 2, "c": 0, "d": 0},
        ),
        # T_b = 0.1 puts more on the best: 4 × softmax = 2.82, 1.04, 0.14, 0.01 -> 3, 1, 0, 0.
        (
            {"balance_temperature": 0.1, "rounding": "largest_remainder"},
            {"a": 3, "b": 1, "c": 0, "d": 0},
        ),
    ],
)
async def test_rebase_splits_a_real_depth_by_softmax_of_its_rewards(
    config: dict[str, Any], widths: dict[str, int]
) -> None:
    assert await depth1_widths("rebase", **config) == widths


async def test_beam_search_would_split_the_same_depth_differently() -> None:
    # The REBASE test above tells the two apart: beam keeps the best ceil(4/2) = 2 evenly.
    assert await depth1_widths("beam", beam_width=2) == {"a": 2, "b": 2, "c": 0, "d": 0}
    assert await depth1_widths("beam", beam_width=4) == {"a": 4, "b": 0, "c": 0, "d": 0}
    beams = [await depth1_widths("beam", beam_width=w) for w in (1, 2, 3, 4)]
    assert await depth1_widths("rebase") not in beams
