"""The calculator in the policy's loop: values written after ``=``, the step continued."""

from __future__ import annotations

import re
from fractions import Fraction

import anyio
import pytest

from rebase_agent import ProviderError, RebaseConfig, StepRequest, solve
from rebase_agent.calculator import (
    TRIGGER,
    CalculatorProvider,
    calculating,
    estimate_continuations,
    format_value,
    writes_value,
)
from rebase_agent.claims import open_value
from rebase_agent.scorers import ArithmeticScorer
from rebase_agent.testing import FunctionProvider


def cut(text: str, stops: tuple[str, ...]) -> str:
    """``text`` up to and including its earliest stop string, as a provider returns it."""
    ends = [text.find(stop) + len(stop) for stop in stops if stop in text]
    return text[: min(ends)] if ends else text


def bad_adder(step: str = "Step 1: 15 + 27 = 12.\n\n", after: str = ".\n\n") -> FunctionProvider:
    """A model that writes ``step`` (with wrong arithmetic) for a new step, and ``after`` when
    the step so far ends with a value, as a model continues after a calculator's digits."""

    def write(request: StepRequest) -> list[str]:
        solution = "".join(request.steps)
        if re.search(r"= -?\d+(\.\d+)?$", solution):
            text = after
        elif solution.endswith(TRIGGER):
            text = step[len(solution) :]  # what the model would have written after "="
        else:
            text = step
        return [cut(text, request.stop)] * request.n

    return FunctionProvider(write)


def test_open_value_reads_the_arithmetic_before_a_final_equals_sign() -> None:
    assert open_value("Step 1: 15 + 27 =") == 42
    assert open_value("Step 1: 4 pens cost 4 * 3 =") == 12
    assert open_value("Step 1: 20% of 50 =") == 10
    assert open_value("Step 2: 2 + 3 = 5 + 4 =") == 9
    assert open_value("Step 1: 10 / 4 =") == Fraction(5, 2)


@pytest.mark.parametrize(
    "text",
    ["Step 1: 15 =", "Step 1: x =", "Step 1: 15 + 27", "a <=", "Step 1: 2 ==", ""],
)
def test_open_value_is_none_where_a_calculator_has_nothing_to_say(text: str) -> None:
    assert open_value(text) is None


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (Fraction(42), "42"),
        (Fraction(-7), "-7"),
        (Fraction(5, 2), "2.5"),
        (Fraction(1, 8), "0.125"),
        (Fraction(10, 3), "3.33"),
        (Fraction(-2, 3), "-0.67"),
        (Fraction(1, 2**10), "0.00"),
    ],
)
def test_format_value_writes_integers_short_decimals_or_rounded_ones(
    value: Fraction, shown: str
) -> None:
    assert format_value(value) == shown


def test_the_calculator_writes_the_value_and_the_model_finishes_the_step() -> None:
    inner = bad_adder()
    calculator = CalculatorProvider(inner)
    request = StepRequest(problem="What is 15 + 27?", n=1, max_tokens=40, seed=3)
    (step,) = anyio.run(calculator.generate, request)
    assert step.text == "Step 1: 15 + 27 = 42.\n\n"
    assert step.finish_reason == "step"
    first, follow = inner.requests
    assert first.stop == ("\n\n", "=") and first.n == 1
    assert follow.steps == ("Step 1: 15 + 27 = 42",) and follow.n == 1
    assert follow.stop == ("\n\n", "=")
    # The model generated "Step 1: 15 + 27 =" (6 words) then ".\n\n" (1): the calculator's
    # digits are not generated tokens, and the step's token limit is what the first part left.
    assert step.completion_tokens == 6 + 1
    assert follow.max_tokens == 40 - 6


def test_without_arithmetic_before_the_equals_sign_nothing_is_written() -> None:
    inner = bad_adder(step="Step 1: x = 5.\n\n")
    (step,) = anyio.run(CalculatorProvider(inner).generate, StepRequest(problem="p"))
    assert step.text == "Step 1: x = 5.\n\n"
    assert inner.requests[1].steps == ("Step 1: x =",)


def test_each_child_is_finished_on_its_own_with_its_own_seed() -> None:
    inner = bad_adder()
    request = StepRequest(problem="What is 15 + 27?", n=3, seed=11)
    steps = anyio.run(CalculatorProvider(inner).generate, request)
    assert [step.text for step in steps] == ["Step 1: 15 + 27 = 42.\n\n"] * 3
    follows = inner.requests[1:]
    assert len(follows) == 3 and all(follow.n == 1 for follow in follows)
    seeds = [follow.seed for follow in follows]
    assert len(set(seeds)) == 3 and None not in seeds
    again = bad_adder()
    anyio.run(CalculatorProvider(again).generate, request)
    assert sorted(f.seed or 0 for f in again.requests[1:]) == sorted(s or 0 for s in seeds)


def test_a_step_with_many_equals_signs_gets_at_most_max_calls() -> None:
    def chain(request: StepRequest) -> list[str]:
        return [cut(" + 1 = 1 + 1 = 1 + 1 = 1 + 1 = 1.\n\n", request.stop)] * request.n

    inner = FunctionProvider(chain)
    (step,) = anyio.run(
        CalculatorProvider(inner, max_calls=2).generate, StepRequest(problem="p", max_tokens=99)
    )
    assert len(inner.requests) == 3
    assert TRIGGER not in inner.requests[-1].stop  # the last part is sampled without the stop
    assert step.finish_reason == "step" and step.text.endswith("\n\n")


def test_a_step_counts_its_continuations_and_the_tokens_each_one_sent() -> None:
    inner = bad_adder()
    (step,) = anyio.run(CalculatorProvider(inner).generate, StepRequest(problem="p", max_tokens=40))
    # One more request after "Step 1: 15 + 27 =" (6 words), which it sent after the problem.
    assert step.continuations == len(inner.requests) - 1 == 1
    assert step.continuation_context_tokens == 6

    def chain(request: StepRequest) -> list[str]:
        return [cut(" + 1 = 1 + 1 = 1 + 1 = 1 + 1 = 1.\n\n", request.stop)] * request.n

    inner = FunctionProvider(chain)
    calculator = CalculatorProvider(inner, max_calls=2)
    (step,) = anyio.run(calculator.generate, StepRequest(problem="p", max_tokens=99))
    # Two continuations: after " + 1 =" (3 words) and after " + 1 = 2 + 1 =" (3 + 3 of them).
    assert step.continuations == len(inner.requests) - 1 == 2
    assert step.continuation_context_tokens == 3 + 6
    # Read back from the text alone (for trees recorded before steps counted them): the count
    # exactly, the tokens by the share of the text before each "=".
    count, sent = estimate_continuations(step.text, step.completion_tokens, max_calls=2)
    assert count == 2 and abs(sent - 9) <= 2


def test_estimate_continuations_reads_the_first_max_calls_equals_signs() -> None:
    assert estimate_continuations("Step 1: no arithmetic.\n\n", 4) == (0, 0)
    # 17 characters, 9 tokens: the "=" end at characters 3, 7, 11 and 15 (of 9 * n / 17 tokens).
    assert estimate_continuations("a = b = c = d = e", 9, max_calls=4) == (4, 2 + 4 + 6 + 8)
    assert estimate_continuations("a = b = c = d = e", 9, max_calls=2) == (2, 2 + 4)
    with pytest.raises(ValueError, match="max_calls must be at least 1, got 0"):
        estimate_continuations("a = b", 3, max_calls=0)


def test_a_step_out_of_tokens_at_the_equals_sign_ends_by_length() -> None:
    inner = bad_adder()
    request = StepRequest(problem="What is 15 + 27?", max_tokens=6)
    (step,) = anyio.run(CalculatorProvider(inner).generate, request)
    assert step.finish_reason == "length"
    assert step.text == "Step 1: 15 + 27 = 42"
    assert len(inner.requests) == 1


def test_a_request_that_already_stops_at_equals_is_passed_through() -> None:
    inner = bad_adder()
    request = StepRequest(problem="What is 15 + 27?", stop=("\n\n", "="))
    (step,) = anyio.run(CalculatorProvider(inner).generate, request)
    assert step.text == "Step 1: 15 + 27 =" and len(inner.requests) == 1


def test_bad_arguments_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="max_calls"):
        CalculatorProvider(bad_adder(), max_calls=0)
    with pytest.raises(ValueError, match="decimals"):
        CalculatorProvider(bad_adder(), decimals=-1)


def test_search_defaults_and_aclose_pass_through() -> None:
    inner = bad_adder()
    inner.search_defaults = {"max_depth": 3}  # type: ignore[attr-defined]
    closed: list[bool] = []

    async def aclose() -> None:
        closed.append(True)

    inner.aclose = aclose  # type: ignore[attr-defined]
    calculator = CalculatorProvider(inner)
    assert calculator.search_defaults == {"max_depth": 3}
    anyio.run(calculator.aclose)
    assert closed == [True]
    assert CalculatorProvider(bad_adder()).search_defaults is None


def test_a_search_with_the_calculator_answers_what_the_model_alone_gets_wrong() -> None:
    def answer(step: str) -> FunctionProvider:
        def write(request: StepRequest) -> list[str]:
            solution = "".join(request.steps)
            if not request.steps:
                return [cut(step, request.stop)] * request.n
            if solution.endswith(TRIGGER):
                return [cut(" 12.\n\n", request.stop)] * request.n
            if not solution.endswith("\n\n"):
                return [cut(".\n\n", request.stop)] * request.n
            value = re.findall(r"= (\d+)", solution)[-1]
            return [f"The answer is {value}."] * request.n

        return FunctionProvider(write)

    config = RebaseConfig(budget=4, max_depth=3, seed=0)
    problem = "What is 15 + 27?"
    alone = anyio.run(
        lambda: solve(
            problem,
            provider=answer("Step 1: 15 + 27 = 12.\n\n"),
            scorer=ArithmeticScorer(),
            config=config,
        )
    )
    helped = anyio.run(
        lambda: solve(
            problem,
            provider=CalculatorProvider(answer("Step 1: 15 + 27 = 12.\n\n")),
            scorer=ArithmeticScorer(),
            config=config,
        )
    )
    assert alone.answer == "12"
    assert helped.answer == "42"
    assert helped.solution.startswith("Step 1: 15 + 27 = 42.\n\n")


# method="correct": for providers that cannot say which stop string ended a step.


@pytest.mark.parametrize(
    ("after", "value", "written"),
    [
        (" 42.", Fraction(42), True),
        ("42 apples", Fraction(42), True),
        (" $1,250 in all", Fraction(1250), True),
        (" 3.33 each", Fraction(10, 3), True),
        (" 3.3", Fraction(10, 3), True),
        (" 3.4", Fraction(10, 3), False),
        (" 12.", Fraction(42), False),
        (" 420", Fraction(42), False),
        (" 42.5", Fraction(42), False),
        (" -7", Fraction(-7), True),
        (" forty-two", Fraction(42), False),
        ("", Fraction(42), False),
    ],
)
def test_writes_value_reads_the_number_after_the_equals_sign(
    after: str, value: Fraction, written: bool
) -> None:
    assert writes_value(after, value) is written


def test_correct_rewrites_a_finished_step_from_its_wrong_value() -> None:
    inner = bad_adder()
    calculator = CalculatorProvider(inner, method="correct")
    request = StepRequest(problem="What is 15 + 27?", n=1, max_tokens=40, seed=3)
    (step,) = anyio.run(calculator.generate, request)
    assert step.text == "Step 1: 15 + 27 = 42.\n\n"
    assert step.finish_reason == "step"
    first, follow = inner.requests
    assert first.stop == ("\n\n",)  # no extra stop string: the whole step is sampled
    assert follow.steps == ("Step 1: 15 + 27 = 42",) and follow.stop == ("\n\n",)
    # Generated: the whole first step (7 words, its tail thrown away but paid for), then ".".
    assert step.completion_tokens == 7 + 1
    # The step's limit counts its kept text: the first step's tokens in proportion to length.
    kept = round(7 * len("Step 1: 15 + 27 =") / len("Step 1: 15 + 27 = 12.\n\n"))
    assert follow.max_tokens == 40 - kept
    assert follow.seed is not None and follow.seed != request.seed


def test_correct_sends_nothing_more_when_the_model_wrote_the_right_values() -> None:
    inner = bad_adder(step="Step 1: 15 + 27 = 42, and 42 * 2 = 84.\n\n")
    (step,) = anyio.run(
        CalculatorProvider(inner, method="correct").generate, StepRequest(problem="p")
    )
    assert step.text == "Step 1: 15 + 27 = 42, and 42 * 2 = 84.\n\n"
    assert len(inner.requests) == 1


def test_correct_fixes_each_wrong_value_of_a_step_in_turn() -> None:
    def write(request: StepRequest) -> list[str]:
        solution = "".join(request.steps)
        if solution.endswith("= 42"):
            return [", and 42 * 2 = 80.\n\n"] * request.n
        if solution.endswith("= 84"):
            return [".\n\n"] * request.n
        return ["Step 1: 15 + 27 = 41, and 41 * 2 = 82.\n\n"] * request.n

    inner = FunctionProvider(write)
    (step,) = anyio.run(
        CalculatorProvider(inner, method="correct").generate, StepRequest(problem="p")
    )
    assert step.text == "Step 1: 15 + 27 = 42, and 42 * 2 = 84.\n\n"
    assert len(inner.requests) == 3
    assert not list(_wrong(step.text))
    # Each rewrite is a continuation; it sent the kept text's share of the step's tokens.
    assert step.continuations == 2
    # The first: 13 words, cut after "Step 1: 15 + 27 =" (17 of 40 characters): 6 words.
    # The second: those 6 and the 7 words of ", and 42 * 2 = 80.", cut after 34 of 40: 11.
    assert step.continuation_context_tokens == round(13 * 17 / 40) + round(13 * 34 / 40) == 17


def _wrong(text: str) -> list[int]:
    """Positions of the ``=`` whose arithmetic is not followed by its value."""
    return [
        i
        for i in range(len(text))
        if text[i] == TRIGGER
        and (value := open_value(text[: i + 1])) is not None
        and not writes_value(text[i + 1 :], value)
    ]


def test_correct_leaves_a_step_without_arithmetic_alone() -> None:
    inner = bad_adder(step="Step 1: x = 5.\n\n")
    (step,) = anyio.run(
        CalculatorProvider(inner, method="correct").generate, StepRequest(problem="p")
    )
    assert step.text == "Step 1: x = 5.\n\n" and len(inner.requests) == 1


def test_correct_with_no_tokens_left_ends_the_step_by_length_with_the_value() -> None:
    inner = bad_adder(step="Step 1: 15 + 27 =")
    request = StepRequest(problem="What is 15 + 27?", max_tokens=6)
    (step,) = anyio.run(CalculatorProvider(inner, method="correct").generate, request)
    assert step.text == "Step 1: 15 + 27 = 42" and step.finish_reason == "length"
    assert len(inner.requests) == 1


def test_correct_stops_after_max_calls() -> None:
    def write(request: StepRequest) -> list[str]:  # always wrong
        return [" + 1 = 5.\n\n" if request.steps else "Step 1: 1 + 1 = 5.\n\n"] * request.n

    inner = FunctionProvider(write)
    (step,) = anyio.run(
        CalculatorProvider(inner, method="correct", max_calls=2).generate,
        StepRequest(problem="p", max_tokens=99),
    )
    assert len(inner.requests) == 3
    assert step.text == "Step 1: 1 + 1 = 2 + 1 = 3 + 1 = 5.\n\n"


def test_a_disabled_calculator_passes_requests_through_and_says_so() -> None:
    inner = bad_adder()
    calculator = CalculatorProvider(inner)
    calculator.enabled = False
    (step,) = anyio.run(calculator.generate, StepRequest(problem="What is 15 + 27?"))
    assert step.text == "Step 1: 15 + 27 = 12.\n\n" and len(inner.requests) == 1
    assert not calculating(calculator) and calculating(CalculatorProvider(inner))
    assert not calculating(inner)
    with pytest.raises(ValueError, match="method"):
        CalculatorProvider(inner, method="guess")  # type: ignore[arg-type]


def test_prepare_passes_through_and_its_error_fails_the_first_request() -> None:
    prepared: list[bool] = []

    async def prepare() -> None:
        prepared.append(True)
        raise ProviderError("probe: cannot reach http://127.0.0.1:9/v1")

    inner = bad_adder()
    inner.prepare = prepare  # type: ignore[attr-defined]
    calculator = CalculatorProvider(inner)
    with pytest.raises(ProviderError, match="probe: cannot reach"):
        anyio.run(calculator.prepare)
    with pytest.raises(ProviderError, match="probe: cannot reach"):
        anyio.run(calculator.generate, StepRequest(problem="p"))
    assert prepared == [True, True] and not inner.requests
    anyio.run(CalculatorProvider(bad_adder()).prepare)  # no prepare: nothing to do
