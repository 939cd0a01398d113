from __future__ import annotations

import pytest

from rebase_agent.evaluation.grading import grade_answer, grade_answers


@pytest.mark.anyio
async def test_gsm8k_numbers_need_no_parser() -> None:
    grades = await grade_answers(["18", "18.00", "$18", "17", None, "1,000"], "18")
    assert [g.correct for g in grades] == [True, True, True, False, False, False]
    assert [g.method for g in grades] == [
        "string",
        "string",
        "string",
        "number",
        "no_answer",
        "number",
    ]
    assert (await grade_answer("1,000", "1000")).correct


@pytest.mark.anyio
async def test_math500_latex_goes_through_math_verify() -> None:
    gold = r"\frac{14}{3}"
    grades = await grade_answers([r"\dfrac{14}{3}", "14/3", r"\frac{3}{14}", "4.6"], gold)
    assert [g.correct for g in grades] == [True, True, False, False]
    assert {g.method for g in grades} == {"math_verify"}
    assert all(g.gold == gold for g in grades)
    polar = r"\left( 3, \frac{\pi}{2} \right)"
    assert (await grade_answer(r"(3, \frac{\pi}{2})", polar)).correct
    assert not (await grade_answer(r"(3, \pi)", polar)).correct
