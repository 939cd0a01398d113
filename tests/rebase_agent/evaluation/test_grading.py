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


@pytest.mark.anyio
async def test_right_answers_are_graded_right_with_many_batches_at_once() -> None:
    # More batches than cores: the wait for a worker is not part of the time limit.
    import anyio

    batches = 24
    grades: list[list[bool]] = [[] for _ in range(batches)]

    async def one(i: int) -> None:
        out = await grade_answers([r"\dfrac{1}{2}", "2/4", r"\frac{3}{4}"], "1/2", timeout_s=1.0)
        grades[i] = [g.correct for g in out]
        assert {g.method for g in out} == {"math_verify"}

    async with anyio.create_task_group() as tg:
        for i in range(batches):
            tg.start_soon(one, i)
    assert grades == [[True, True, False]] * batches
