"""Reading one reward from a path's step scores, and checking a configured score.

``last`` is REBASE's node reward (the PRM's score of the newest step, ``R(x r_1 … r_k)``);
``min``, ``prod`` and ``mean`` are the other aggregations of the REBASE and search-and-learn
evaluation code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rebase_agent.config import RewardReading

__all__ = ("finite_score", "read_reward")


def read_reward(step_scores: Sequence[float], how: RewardReading) -> float:
    """Reduce a path's step scores to one reward.

    Args:
        step_scores: One score per step, root side first.
        how: ``"last"``, ``"min"``, ``"prod"`` or ``"mean"``.

    Returns:
        The reward; 0.0 for an empty path.
    """
    if not step_scores:
        return 0.0
    if how == "last":
        return float(step_scores[-1])
    if how == "min":
        return float(min(step_scores))
    if how == "prod":
        return float(math.prod(step_scores))
    if how == "mean":
        return float(math.fsum(step_scores) / len(step_scores))
    raise ValueError(f"unknown reward reading {how!r}")


def finite_score(owner: str, name: str, value: object) -> float:
    """``value`` as a float, for a scorer's configured score ``name``.

    Raises:
        ValueError: It is not a number (``bool`` included) or not finite, naming ``owner`` and
            ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{owner} {name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{owner} {name} must be finite, got {value!r}")
    return float(value)
