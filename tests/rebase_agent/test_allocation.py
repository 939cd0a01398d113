from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebase_agent.allocation import allocate_widths, softmax_weights

REWARDS = [0.9, 0.8, 0.5, 0.3, 0.29]


@pytest.mark.parametrize(
    ("temperature", "expected"), [(0.2, [9, 6, 1, 0, 0]), (0.1, [12, 4, 0, 0, 0])]
)
def test_greedy_ceil_matches_the_released_code(temperature: float, expected: list[int]) -> None:
    assert allocate_widths(REWARDS, 16, temperature=temperature) == expected


@pytest.mark.parametrize(
    ("temperature", "expected"), [(0.2, [9, 5, 1, 1, 0]), (0.1, [12, 4, 0, 0, 0])]
)
def test_largest_remainder_is_the_papers_rounding_made_exact(
    temperature: float, expected: list[int]
) -> None:
    # B*softmax at T_b=0.2 is 8.70, 5.28, 1.18, 0.43, 0.41: floors 8,5,1,0,0 and the two
    # leftover units go to the largest fractional parts (.70 and .43).
    widths = allocate_widths(REWARDS, 16, temperature=temperature, rounding="largest_remainder")
    assert widths == expected


def test_order_of_input_does_not_matter() -> None:
    shuffled = [0.3, 0.9, 0.29, 0.5, 0.8]
    widths = allocate_widths(shuffled, 16, temperature=0.2)
    assert dict(zip(shuffled, widths, strict=True)) == dict(
        zip(REWARDS, [9, 6, 1, 0, 0], strict=True)
    )


def test_truncation_keeps_only_the_top_nodes() -> None:
    widths = allocate_widths(REWARDS, 16, temperature=10.0, truncation_ratio=0.4)
    assert widths[2:] == [0, 0, 0]
    assert sum(widths) == 16 and widths[0] >= widths[1] > 0


def test_single_node_gets_the_whole_budget() -> None:
    assert allocate_widths([0.1], 7, temperature=0.2) == [7]


def test_unbounded_rewards_do_not_overflow() -> None:
    widths = allocate_widths([1e6, -1e6, 3e5], 10, temperature=0.01)
    assert widths == [10, 0, 0]
    assert softmax_weights([1e6, 1e6 - 1], 1.0) == [1.0, math.exp(-1)]


def test_bad_inputs_fail_clearly() -> None:
    with pytest.raises(ValueError, match="finite"):
        allocate_widths([0.5, math.nan], 4, temperature=0.2)
    with pytest.raises(ValueError, match="temperature"):
        allocate_widths([0.5], 4, temperature=0.0)
    with pytest.raises(ValueError, match="budget"):
        allocate_widths([0.5], -1, temperature=0.2)
    assert allocate_widths([], 4, temperature=0.2) == []
    assert allocate_widths([0.3, 0.2], 0, temperature=0.2) == [0, 0]


rewards_lists = st.lists(
    st.one_of(
        st.floats(min_value=0.0, max_value=1.0),
        st.floats(min_value=-1e6, max_value=1e6),
        st.sampled_from([0.0, 1.0, 0.5]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(
    rewards=rewards_lists,
    budget=st.integers(min_value=0, max_value=512),
    temperature=st.sampled_from([1e-3, 0.05, 0.1, 0.2, 1.0, 50.0]),
    rounding=st.sampled_from(["greedy_ceil", "largest_remainder"]),
    ratio=st.one_of(st.none(), st.floats(min_value=0.01, max_value=1.0)),
)
def test_widths_sum_to_budget_are_non_negative_and_monotone(
    rewards: list[float], budget: int, temperature: float, rounding: str, ratio: float | None
) -> None:
    widths = allocate_widths(
        rewards,
        budget,
        temperature=temperature,
        rounding=rounding,  # type: ignore[arg-type]
        truncation_ratio=ratio,
    )
    assert len(widths) == len(rewards)
    assert sum(widths) == budget
    assert all(w >= 0 for w in widths)
    for i, ri in enumerate(rewards):
        for j, rj in enumerate(rewards):
            if ri > rj:
                assert widths[i] >= widths[j], (ri, rj, widths)
