from __future__ import annotations

import logging

import pytest

from rebase_agent.equivalence import group_answers
from rebase_agent.result import Candidate
from rebase_agent.rewards import read_reward
from rebase_agent.voting import vote

pytestmark = pytest.mark.anyio


def cand(node_id: int, answer: str | None, score: float) -> Candidate:
    return Candidate(
        node_id=node_id, answer=answer, steps=[f"s{node_id}"], step_scores=[score], score=score
    )


async def test_numbers_group_by_value_without_math_verify() -> None:
    assert await group_answers(["18", "18.0", "1,8", "$18$", "19"]) == [0, 0, 1, 0, 2]


async def test_latex_forms_of_one_value_are_one_class() -> None:
    labels = await group_answers([r"\frac{1}{2}", "0.5", "1/2", r"\dfrac12", "2", r"\sqrt{4}"])
    assert labels == [0, 0, 0, 0, 1, 1]


async def test_normalized_method_never_parses_math() -> None:
    labels = await group_answers([r"\frac{1}{2}", "0.5", "Paris", "paris"], method="normalized")
    assert labels == [0, 1, 2, 2]


async def test_comparisons_past_the_time_limit_fall_back_to_strings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    answers = [r"\frac{1}{2}", "0.5"]
    labels = await group_answers(answers, timeout_s=1e-4)
    assert labels == [0, 1]
    assert "normalised strings" in caplog.text


async def test_weighted_majority_majority_and_best_of_n_can_disagree() -> None:
    candidates = [
        cand(1, "A", 0.9),  # best single score
        cand(2, "B", 0.6),
        cand(3, "B", 0.6),  # B: weight 1.2, count 2
        cand(4, "C", 0.3),
        cand(5, "C", 0.3),
        cand(6, "C", 0.3),  # C: count 3, weight 0.9
    ]
    chosen, votes = await vote(candidates, aggregation="weighted_majority")
    assert chosen is not None and chosen.answer == "B" and votes[0].weight == pytest.approx(1.2)
    chosen, votes = await vote(candidates, aggregation="majority")
    assert chosen is not None and chosen.answer == "C" and votes[0].count == 3
    chosen, _ = await vote(candidates, aggregation="best_of_n")
    assert chosen is not None and chosen.node_id == 1


async def test_solutions_without_an_answer_never_win() -> None:
    candidates = [cand(1, None, 0.99), cand(2, None, 0.98), cand(3, "7", 0.01)]
    for aggregation in ("weighted_majority", "majority", "best_of_n"):
        chosen, votes = await vote(candidates, aggregation=aggregation)  # type: ignore[arg-type]
        assert chosen is not None and chosen.node_id == 3
        assert [v.answer for v in votes] == ["7"]
    chosen, votes = await vote([cand(1, None, 0.9)], aggregation="weighted_majority")
    assert chosen is None and votes == []


async def test_winner_is_the_best_scored_member_of_the_winning_class() -> None:
    candidates = [cand(1, "5", 0.4), cand(2, "5.0", 0.8), cand(3, "6", 0.7)]
    chosen, votes = await vote(candidates, aggregation="weighted_majority")
    assert chosen is not None and chosen.node_id == 2
    assert votes[0].node_ids == [1, 2] and votes[0].answer == "5.0"


async def test_ties_go_to_the_class_seen_first() -> None:
    chosen, _ = await vote([cand(1, "x", 0.5), cand(2, "y", 0.5)], aggregation="majority")
    assert chosen is not None and chosen.node_id == 1


@pytest.mark.parametrize(
    ("how", "expected"), [("last", 0.5), ("min", 0.2), ("prod", 0.08), ("mean", 0.5)]
)
def test_read_reward_takes_last_min_prod_or_mean_of_step_scores(how: str, expected: float) -> None:
    assert read_reward([0.8, 0.2, 0.5], how) == pytest.approx(expected)  # type: ignore[arg-type]
    assert read_reward([], how) == 0.0  # type: ignore[arg-type]


LOAD_ANSWERS = ["1/2", "0.5", r"\frac{1}{2}", r"\dfrac12", "2/4", "3", r"\sqrt{9}", "x", "0.50"]
LOAD_LABELS = [0, 0, 0, 0, 0, 1, 1, 2, 0]


async def test_equivalent_answers_still_merge_with_many_groups_at_once() -> None:
    # Many searches vote at once, more than there are cores: waiting for a worker and starting
    # it must not eat the comparisons' time limit.
    import anyio

    groups = 32
    labels: list[list[int]] = [[] for _ in range(groups)]

    async def one(i: int) -> None:
        labels[i] = await group_answers(LOAD_ANSWERS, timeout_s=2.0)

    async with anyio.create_task_group() as tg:
        for i in range(groups):
            tg.start_soon(one, i)
    assert labels == [LOAD_LABELS] * groups
