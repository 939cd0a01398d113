"""REBASE's balanced expansion: split a sampling budget over nodes by softmax of their rewards.

Paper (Wu et al. 2024, Eq. 1): ``W_j = Round(B · exp(R_j / T_b) / Σ_k exp(R_k / T_b))``.

Two ways to make that a list of integers summing exactly to B:

* ``greedy_ceil`` (the released code, ``Tree.select_softmax``): nodes by reward, best first;
  each gets ``ceil(B_left · w_j / Σ w not yet allocated)``, which is then subtracted from
  ``B_left``. Biased toward the best nodes. With B=16, rewards [.9, .8, .5, .3, .29] and
  T_b=0.2 this gives [9, 6, 1, 0, 0].
* ``largest_remainder``: ``floor(B · softmax)``, then the leftover units go to the largest
  fractional parts (Hamilton's method), so the widths are the paper's rounding made exact.

Both work in float64 with the maximum reward subtracted, so any finite reward is safe. Widths are
never negative, sum to B, and a node with a higher reward never gets fewer than one with a lower.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rebase_agent.config import Rounding

__all__ = ("allocate_widths", "softmax_weights", "split_evenly", "split_proportionally")

# A share computed as 8.000000000000002 must round up to 8, not 9.
_CEIL_TOLERANCE = 1e-9


def softmax_weights(rewards: Sequence[float], temperature: float) -> list[float]:
    """Return ``exp((R_j - max R) / T)`` for each reward: unnormalised, max weight is 1."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if not rewards:
        return []
    for r in rewards:
        if not math.isfinite(r):
            raise ValueError(f"rewards must be finite, got {list(rewards)!r}")
    top = max(rewards)
    return [math.exp((r - top) / temperature) for r in rewards]


def allocate_widths(
    rewards: Sequence[float],
    budget: int,
    *,
    temperature: float,
    rounding: Rounding = "greedy_ceil",
    truncation_ratio: float | None = None,
) -> list[int]:
    """Split ``budget`` samples over nodes with the given rewards.

    Args:
        rewards: One finite reward per node.
        budget: Samples to spread (the remaining budget B); 0 gives all zeros.
        temperature: The balance temperature T_b (> 0).
        rounding: ``"greedy_ceil"`` or ``"largest_remainder"`` (see the module docstring).
        truncation_ratio: If set, only the best ``ceil(ratio × len(rewards))`` nodes take part.

    Returns:
        One width per node, in the order of ``rewards``; they sum to ``budget``.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget!r}")
    widths = [0] * len(rewards)
    if budget == 0 or not rewards:
        return widths
    # Best first; ties keep their input order, so the allocation is deterministic.
    order = sorted(range(len(rewards)), key=lambda i: -rewards[i])
    if truncation_ratio is not None:
        order = order[: max(1, math.ceil(truncation_ratio * len(order)))]
    weights = softmax_weights([rewards[i] for i in order], temperature)
    shares = (
        _greedy_ceil(weights, budget)
        if rounding == "greedy_ceil"
        else _largest_remainder(weights, budget)
    )
    for i, width in zip(order, shares, strict=True):
        widths[i] = width
    return widths


def _greedy_ceil(weights: list[float], budget: int) -> list[int]:
    """The released code's allocation, over weights sorted best first."""
    # Suffix sums, so "the weight not yet allocated" carries no accumulated subtraction error.
    remaining_weight = [0.0] * (len(weights) + 1)
    for i in range(len(weights) - 1, -1, -1):
        remaining_weight[i] = remaining_weight[i + 1] + weights[i]
    shares: list[int] = []
    left = budget
    for i, w in enumerate(weights):
        if left == 0 or remaining_weight[i] == 0.0:
            shares.append(0)
            continue
        share = math.ceil(left * w / remaining_weight[i] - _CEIL_TOLERANCE)
        share = min(max(share, 0), left)
        shares.append(share)
        left -= share
    # Only reachable when every remaining weight underflowed to 0: give the rest to the best.
    shares[0] += left
    return shares


def _largest_remainder(weights: list[float], budget: int) -> list[int]:
    """Hamilton's method: floors, then leftover units to the largest fractional parts."""
    return split_proportionally(budget, weights)


def split_evenly(total: int, count: int) -> list[int]:
    """``total`` split over ``count`` slots as evenly as possible, the extra units first.

    >>> split_evenly(7, 3)
    [3, 2, 2]
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count!r}")
    base, extra = divmod(total, count)
    return [base + (i < extra) for i in range(count)]


def split_proportionally(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` split in proportion to ``weights``, exactly (Hamilton's largest remainders).

    Floors first, then the leftover units go to the largest fractional parts; on equal
    remainders the earlier slot wins. The parts always sum to ``total``. Weights must be
    non-negative with a positive sum.

    >>> split_proportionally(10, [1, 1, 2])
    [3, 2, 5]
    """
    whole = math.fsum(weights)
    if not weights or whole <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"weights must be non-negative with a positive sum, got {list(weights)!r}")
    exact = [total * w / whole for w in weights]
    shares = [math.floor(x) for x in exact]
    leftover = total - sum(shares)
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in by_remainder[:leftover]:
        shares[i] += 1
    return shares
