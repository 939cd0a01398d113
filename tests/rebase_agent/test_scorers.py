from __future__ import annotations

import math

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from rebase_agent import (
    RebaseConfig,
    ScoreRequest,
    ScoringError,
    StepRequest,
    record_scorer_tokens,
    solve,
)
from rebase_agent.scorers import (
    INLINE_CHARS,
    ArithmeticScorer,
    ProductScorer,
    describe,
    with_check,
)
from rebase_agent.testing import FunctionProvider, FunctionScorer

pytestmark = pytest.mark.anyio


def request(*solutions: tuple[str, ...]) -> ScoreRequest:
    return ScoreRequest(problem="p", solutions=solutions)


RIGHT = "6 * 7 = 42.\n\n"
WRONG = "6 * 7 = 41.\n\n"
PROSE = "Let us add the eggs.\n\n"


@pytest.mark.parametrize(
    ("steps", "scores"),
    [
        ((RIGHT,), [1.0]),
        ((PROSE,), [0.5]),
        ((WRONG,), [0.0]),
        ((PROSE, RIGHT, PROSE), [0.5, 1.0, 0.5]),
        # a false claim sinks its step and every later one, verified or not
        ((WRONG, RIGHT), [0.0, 0.0]),
        ((RIGHT, WRONG, PROSE, RIGHT), [1.0, 0.0, 0.0, 0.0]),
        ((PROSE, "So 2 + 2 = 4 and 3 + 3 = 7.", RIGHT), [0.5, 0.0, 0.0]),
        ((), []),
    ],
)
async def test_arithmetic_scores_are_path_aware(
    steps: tuple[str, ...], scores: list[float]
) -> None:
    assert await ArithmeticScorer().score(request(steps)) == [scores]


@pytest.mark.parametrize(
    ("problem", "steps", "scores"),
    [
        # The problem asks for an expression's value: the final answer is that claim.
        (
            "What is 6 * 7?",
            ("6 * 7 = 42.\n\n", "42 + 6 = 48.\n\n", "The answer is 48."),
            [1.0, 1.0, 0.0],
        ),
        ("What is 6 * 7?", ("The 6 is 6.\n\n", "The answer is 6."), [0.5, 0.0]),
        ("What is 6 * 7?", ("Let me think.\n\n", "The answer is 42."), [0.5, 1.0]),
        ("Compute it. What is 20% of 50?", ("The answer is 10.",), [1.0]),
        ("What is 100 - 37?", ("The answer is 100 - 3 =",), [0.0]),
        # A word problem: the answer is checked against the path's own arithmetic.
        (
            "Tom has 5 apples and buys 7 more. How many apples does he have?",
            ("5 + 7 = 12.\n\n", "The answer is 12."),
            [1.0, 1.0],
        ),
        (
            "Tom has 5 apples and buys 7 more. How many apples does he have?",
            ("5 + 7 = 12.\n\n", "The answer is 54."),
            [1.0, 0.0],
        ),
        # restating a number of the problem, or an earlier result, is not called false
        (
            "Tom has 5 apples and buys 7 more. How many apples does he have?",
            ("5 + 7 = 12.\n\n", "The answer is 7."),
            [1.0, 0.5],
        ),
        # with no arithmetic on the path there is nothing to hold the answer to
        (
            "Tom has 5 apples and buys 7 more. How many apples does he have?",
            ("He buys more.\n\n", "The answer is 54."),
            [0.5, 0.5],
        ),
    ],
)
async def test_final_answers_are_checked_against_the_question_or_the_path(
    problem: str, steps: tuple[str, ...], scores: list[float]
) -> None:
    got = await ArithmeticScorer().score(ScoreRequest(problem=problem, solutions=(steps,)))
    assert got == [scores]


async def test_with_check_is_a_veto_that_keeps_the_scorers_scale() -> None:
    inner = FunctionScorer(lambda req: [[0.8] * len(steps) for steps in req.solutions])
    checked = with_check(inner, "arithmetic")
    got = await checked.score(request((PROSE,), (RIGHT,), (WRONG, PROSE)))
    assert got == [[0.8], [0.8], [0.0, 0.0]]
    assert with_check(inner, "none") is inner
    assert describe(checked) == "FunctionScorer × arithmetic check"
    grounded = with_check(inner, "grounded")
    assert describe(grounded) == "FunctionScorer × arithmetic check × grounding check"
    with pytest.raises(
        ValueError, match="check must be one of grounded, arithmetic, none, got 'sympy'"
    ):
        with_check(inner, "sympy")


async def test_arithmetic_scorer_scores_each_solution_with_its_own_values() -> None:
    scorer = ArithmeticScorer(verified=0.9, unchecked=0.4, false=-1.0)
    out = await scorer.score(request((RIGHT,), (WRONG, PROSE), (PROSE,), (PROSE, RIGHT)))
    assert out == [[0.9], [-1.0, -1.0], [0.4], [0.4, 0.9]]
    assert all(isinstance(s, float) for path in out for s in path)


async def test_arithmetic_scorer_checks_long_requests_off_the_loop() -> None:
    long_prose = "Nothing to check here. " * (INLINE_CHARS // 20)
    out = await ArithmeticScorer().score(request((long_prose, WRONG), (RIGHT,)))
    assert out == [[0.5, 0.0], [1.0]]


@pytest.mark.parametrize(
    "kwargs", [{"verified": math.nan}, {"false": math.inf}, {"unchecked": "0.5"}, {"false": True}]
)
def test_arithmetic_scorer_rejects_scores_that_are_not_finite_numbers(
    kwargs: dict[str, object],
) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ArithmeticScorer(**kwargs)  # type: ignore[arg-type]


async def test_product_multiplies_step_scores_elementwise() -> None:
    halves = FunctionScorer(lambda r: [[0.5] * len(steps) for steps in r.solutions])
    scorer = ProductScorer(ArithmeticScorer(unchecked=0.8), halves)
    out = await scorer.score(request((RIGHT, PROSE), (WRONG,)))
    assert out == [[0.5, 0.4], [0.0]]
    assert len(halves.requests) == 1


async def test_product_of_one_scorer_is_that_scorer() -> None:
    out = await ProductScorer(ArithmeticScorer()).score(request((PROSE, RIGHT), (WRONG,)))
    assert out == [[0.5, 1.0], [0.0]]


async def test_product_calls_its_scorers_concurrently() -> None:
    gate = anyio.Event()
    first = FunctionScorer(lambda r: [[2.0] for _ in r.solutions], gate=gate)
    second = FunctionScorer(lambda r: [[3.0] for _ in r.solutions], gate=gate)
    out: list[list[list[float]]] = []

    async def call() -> None:
        out.append(await ProductScorer(first, second).score(request((PROSE,))))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await wait_all_tasks_blocked()
        assert (first.in_flight, second.in_flight) == (1, 1)  # both wait at the gate at once
        gate.set()
    assert out == [[[6.0]]]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (lambda r: [[1.0]], "returned 1 score lists for 2 solutions"),
        (lambda r: [[1.0], [1.0, 1.0]], "returned 2 scores for solution 1, which has 1 steps"),
        (lambda r: [[1.0], [math.nan]], "non-finite score"),
        (lambda r: [[1.0], ["high"]], "non-finite score"),
        (lambda r: None, "not a list of score lists"),
        (lambda r: [[1.0], 0.5], "for solution 1, not a list"),
    ],
)
async def test_product_rejects_scores_of_the_wrong_shape_naming_the_scorer(
    bad: object, message: str
) -> None:
    scorer = ProductScorer(ArithmeticScorer(), FunctionScorer(bad))  # type: ignore[arg-type]
    with pytest.raises(ScoringError, match=message) as info:
        await scorer.score(request((RIGHT,), (PROSE,)))
    assert "FunctionScorer (scorer 1 of ProductScorer)" in str(info.value)


async def test_a_failing_scorer_cancels_the_others_and_is_raised_as_it_was() -> None:
    failure = ScoringError("the PRM server is down")

    def fail(r: ScoreRequest) -> list[list[float]]:
        raise failure

    waiting = FunctionScorer(lambda r: [[1.0] for _ in r.solutions], gate=anyio.Event())
    # fail_after only turns a hang (a scorer that is never cancelled) into a failure
    with anyio.fail_after(30), pytest.raises(ScoringError) as info:
        await ProductScorer(waiting, FunctionScorer(fail)).score(request((PROSE,)))
    assert info.value is failure
    assert any("FunctionScorer (scorer 1 of ProductScorer)" in n for n in failure.__notes__)
    assert waiting.cancelled == 1 and waiting.in_flight == 0


def test_product_needs_a_scorer() -> None:
    with pytest.raises(ValueError, match="at least one scorer"):
        ProductScorer()


class Closable(FunctionScorer):
    def __init__(self, fail: bool = False) -> None:
        super().__init__(lambda r: [[1.0] * len(steps) for steps in r.solutions])
        self.fail = fail
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1
        if self.fail:
            raise RuntimeError("close failed")


async def test_aclose_closes_every_inner_scorer_even_when_one_fails() -> None:
    first, second = Closable(fail=True), Closable()
    scorer = ProductScorer(first, ArithmeticScorer(), second)
    with pytest.raises(RuntimeError, match="close failed"):
        await scorer.aclose()
    assert (first.closed, second.closed) == (1, 1)
    await ProductScorer(Closable(), ArithmeticScorer()).aclose()


# ---------------------------------------------------------------------------------------------
# In a search

PROBLEM = "Janet has 6 boxes of 7 eggs and buys 5 more eggs. How many eggs does she have?"


def sloppy_arithmetic(r: StepRequest) -> list[str]:
    """Three children in four multiply wrongly; every later step is right given the first."""
    if r.depth == 0:
        return [RIGHT if i % 4 == 0 else WRONG for i in range(r.n)]
    eggs = 42 if "= 42" in r.steps[0] else 41
    if r.depth == 1:
        return [f"Then {eggs} + 5 = {eggs + 5} eggs.\n\n"] * r.n
    return [f"The answer is {eggs + 5}."] * r.n


def config() -> RebaseConfig:
    return RebaseConfig(budget=8, seed=0, answer_equivalence="normalized")


async def test_the_arithmetic_scorer_steers_rebase_to_the_right_answer() -> None:
    provider = FunctionProvider(sloppy_arithmetic)
    result = await solve(PROBLEM, provider=provider, scorer=ArithmeticScorer(), config=config())
    assert result.answer == "47"
    assert provider.requests[0].n == 8  # the first depth: 2 right, 6 wrong
    # the wrong first steps score 0 and get no budget; the right ones get all of it
    depth1 = [n for n in result.nodes if n.depth == 1]
    assert sorted((n.step, n.width) for n in depth1) == [(WRONG, 0)] * 6 + [(RIGHT, 4)] * 2
    assert all(c.answer == "47" for c in result.candidates)


async def test_without_the_check_the_sloppy_majority_wins() -> None:
    """The control: a scorer that cannot tell the paths apart lets the wrong majority win."""
    flat = FunctionScorer(lambda r: [[0.5] * len(steps) for steps in r.solutions])
    result = await solve(
        PROBLEM, provider=FunctionProvider(sloppy_arithmetic), scorer=flat, config=config()
    )
    assert result.answer == "46"


async def test_composed_scorers_still_report_their_tokens_to_the_search() -> None:
    def prm(r: ScoreRequest) -> list[list[float]]:
        record_scorer_tokens(7, 2)  # runs in a task of ProductScorer's task group
        return [[0.9] * len(steps) for steps in r.solutions]

    scorer = ProductScorer(FunctionScorer(prm), ArithmeticScorer())
    result = await solve(
        PROBLEM, provider=FunctionProvider(sloppy_arithmetic), scorer=scorer, config=config()
    )
    assert result.answer == "47"
    assert result.usage.scorer_calls > 0
    assert result.usage.scorer_prompt_tokens == 7 * result.usage.scorer_calls
    assert result.usage.scorer_completion_tokens == 2 * result.usage.scorer_calls
