from __future__ import annotations

import pytest

from rebase_agent.answers import extract_answer, extract_boxed, final_answer, normalize_answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (r"so $x = \boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"\boxed{1} then \boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{a_{i}^{2}}", "a_{i}^{2}"),
        ("Step 3: 4 + 5 = 9. The answer is: 9 ки", "9"),
        ("The answer is 1,000.", "1,000"),
        ("Therefore, the final answer is $18$. I hope it is correct.", "18"),
        ("The answer is 3.5 meters. Next", "3.5"),
        ("The answer is 7, we must add 5 and 6.", "7"),
        ("So the answer is 18 dollars.", "18"),
        ("The answer is 12 because 3 * 4 = 12.", "12"),
        ("The answer is 2x + 1; check it.", "2x + 1"),
        ("12 = 12, so the answer is 12.", "12"),
        (
            r"The answer is \left(3, \frac{\pi}{2}\right), as shown.",
            r"\left(3, \frac{\pi}{2}\right)",
        ),
        ("First we check whether the answer is positive.", None),
        ("The answer is $\\boxed{7}$.", "7"),
        ("she pays 3 * 6 = 18 dollars\n#### 18", "18"),
        ("the answer is 4\nlater: The answer is 5.", "5"),
        # Arithmetic worked out in the answer: its value, so votes and grading see the number.
        ("The answer is 50,000 - 150 = 49850.", "49850"),
        ("The answer is 60 / 3 = 20", "20"),
        ("The answer is 3 x 4 = 12 apples.", "12"),
        ("The answer is 5 * (3 + 1) = 20 = 20.", "20"),
        # An equation is an answer in its own right.
        ("The answer is 2x + 3 = 7.", "2x + 3 = 7"),
        ("The answer is a = b.", "a = b"),
        ("no answer here", None),
        ("The answer is", None),
        (r"\boxed{}", None),
        (r"unbalanced \boxed{1", None),
    ],
)
def test_extract_answer_takes_the_answer_not_its_sentence(text: str, answer: str | None) -> None:
    assert extract_answer(text) == answer


@pytest.mark.parametrize(
    ("step", "answer"),
    [
        ("Step 2: 6 * 7 = 42. The answer is 42.\n\n", "42"),
        ("Step 3: 4 + 5 = 9. The answer is: 9 ки\n", "9"),
        ("Therefore, the final answer is $18$. I hope it is correct.", "18"),
        (r"so $x = \boxed{4}$ and we are done.\n\n", "4"),
        ("The answer is 7, we must add 5 and 6.\n\n", "7"),
        ("she pays 18 dollars\n#### 18", "18"),
        # an answer phrase inside reasoning, or followed by more reasoning, ends nothing
        ("Step 1: First we check whether the answer is positive.\n\n", None),
        ("Step 1: We need to see if the answer is even.\n\n", None),
        ("The answer is 5 if x > 0. Otherwise it is 3.\n\n", None),
        ("The answer is 4.\nNow we check it: 2 + 2 = 4.\n\n", None),
        ("Step 1: 3 + 4 = 7.\n\n", None),
    ],
)
def test_final_answer_only_where_the_step_ends_the_solution(step: str, answer: str | None) -> None:
    assert final_answer(step, ("\n\n",)) == answer


def test_final_answer_ignores_a_trailing_delimiter() -> None:
    assert final_answer("The answer is 9\nStep", ("\nStep",)) == "9"
    assert final_answer("The answer is 9\nStep") is None  # "Step" after it is more text


def test_extract_boxed_takes_the_last_balanced_box() -> None:
    assert extract_boxed(r"\boxed{x} and \fbox{\sqrt{2}}") == r"\sqrt{2}"
    assert extract_boxed("nothing") is None


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("5.0", "5"),
        ("1,000", "1000"),
        ("$12$", "12"),
        ("x = 3", "3"),
        (r"\text{Monday}", "monday"),
        ("0.50", "0.5"),
        ("-7.", "-7"),
        (r"\left( 1, 2 \right)", "( 1, 2 )"),
        ("100", "100"),
    ],
)
def test_normalize_answer_writes_one_canonical_form(raw: str, normal: str) -> None:
    assert normalize_answer(raw) == normal
