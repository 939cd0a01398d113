"""The grounding check: a word problem's path must work on the problem's numbers."""

from __future__ import annotations

from fractions import Fraction

import anyio
import pytest

from rebase_agent import ScoreRequest
from rebase_agent.grounding import GroundingScorer, problem_numbers

ANNA = "Anna is 7 years old. Her mother is 4 times as old as Anna. How old is her mother?"
SARA = (
    "Sara has 3 bags with 8 marbles in each bag. She gives away 5 marbles. "
    "How many marbles does she have left?"
)


def test_problem_numbers_reads_digits_and_number_words() -> None:
    assert problem_numbers("A pizza has 8 slices. Three friends eat 2 slices each.") == {
        Fraction(8),
        Fraction(3),
        Fraction(2),
    }
    assert problem_numbers("It costs 1,200 dollars, twice a dozen") == {
        Fraction(1200),
        Fraction(2),
        Fraction(12),
    }
    assert problem_numbers("three apples", words=False) == frozenset()


def test_a_step_about_a_number_from_nowhere_scores_low_and_so_does_the_rest_of_its_path() -> None:
    scorer = GroundingScorer()
    wrong = ["Step 1: 6 * 4 = 24.\n\n", "Step 2: 24 + 4 = 28.\n\n", "The answer is 28."]
    right = ["Step 1: 7 * 4 = 28.\n\n", "The answer is 28."]
    # ... and its answer used one of the problem's two numbers: (1/2) ** 2 of that.
    assert scorer.path_scores(wrong, ANNA) == pytest.approx([0.2, 0.2, 0.2 / 4])
    assert scorer.path_scores(right, ANNA) == [1.0, 1.0]


def test_earlier_results_and_everyday_constants_are_known_numbers() -> None:
    steps = ["Step 1: 3 * 8 = 24 marbles.\n\n", "Step 2: 24 - 5 = 19.\n\n", "The answer is 19."]
    assert GroundingScorer().path_scores(steps, SARA) == [1.0, 1.0, 1.0]
    half = ["Step 1: 86 / 2 = 43.\n\n", "The answer is 43."]
    assert GroundingScorer().path_scores(half, "A rope is 86 m long. Half is cut. How much?") == [
        1.0,
        1.0,
    ]


def test_a_final_answer_is_weighed_by_the_share_of_the_problem_numbers_it_used() -> None:
    partial = ["Step 1: 3 * 8 = 24 marbles.\n\n", "The answer is 24."]
    scores = GroundingScorer(coverage_power=1.0).path_scores(partial, SARA)
    assert scores[0] == 1.0  # not a final step: no coverage factor
    assert scores[1] == pytest.approx(2 / 3)  # 3 and 8 used, 5 ignored
    assert GroundingScorer(coverage_power=0.0).path_scores(partial, SARA) == [1.0, 1.0]


def test_a_bare_expression_is_left_to_the_arithmetic_check() -> None:
    steps = ["Step 1: 6 * 9 = 54.\n\n", "The answer is 54."]
    assert GroundingScorer().path_scores(steps, "What is 6 * 7?") == [1.0, 1.0]


def test_score_gives_one_score_per_step_of_each_solution() -> None:
    request = ScoreRequest(
        problem=ANNA,
        solutions=(("Step 1: 6 * 4 = 24.\n\n",), ("Step 1: 7 * 4 = 28.\n\n", "The answer is 28.")),
    )
    assert anyio.run(GroundingScorer().score, request) == [[0.2], [1.0, 1.0]]


def test_bad_arguments_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="ungrounded"):
        GroundingScorer(ungrounded=float("nan"))
    with pytest.raises(ValueError, match="coverage_power"):
        GroundingScorer(coverage_power=-1)
    with pytest.raises(ValueError, match="grounded"):
        GroundingScorer(grounded=True)


def test_every_command_applies_the_grounded_check_by_default() -> None:
    from rebase_agent.cli import solve
    from rebase_agent.evaluation.settings import EvalSettings
    from rebase_agent.scorers import DEFAULT_CHECK

    assert DEFAULT_CHECK == "grounded"
    (check,) = [p for p in solve.params if p.name == "check"]
    assert check.default == DEFAULT_CHECK
    assert EvalSettings.model_fields["check"].default == DEFAULT_CHECK
    server = pytest.importorskip("rebase_server.config")
    assert server.RouteConfig().check == DEFAULT_CHECK
