from __future__ import annotations

import pytest

from rebase_agent.answers import extract_answer, extract_boxed, normalize_answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (r"so $x = \boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"\boxed{1} then \boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{a_{i}^{2}}", "a_{i}^{2}"),
        ("Step 3: 4 + 5 = 9. The answer is: 9 ки", "9"),
        ("The answer is 1,000.", "1,000"),
        ("Therefore, the final answer is $18$. I hope it is correct.", "18"),
        ("The answer is 3.5 meters. Next", "3.5 meters"),
        ("The answer is $\\boxed{7}$.", "7"),
        ("she pays 3 * 6 = 18 dollars\n#### 18", "18"),
        ("the answer is 4\nlater: The answer is 5.", "5"),
        ("no answer here", None),
        ("The answer is", None),
        (r"\boxed{}", None),
        (r"unbalanced \boxed{1", None),
    ],
)
def test_extract_answer(text: str, answer: str | None) -> None:
    assert extract_answer(text) == answer


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
def test_normalize_answer(raw: str, normal: str) -> None:
    assert normalize_answer(raw) == normal
