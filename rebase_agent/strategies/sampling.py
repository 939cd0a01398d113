"""Sampling: N independent solutions, generated step by step.

The problem gets all N children at depth 1; after that every open path gets exactly one child
per depth, so the paths never interact. Through the same machinery as REBASE, every step is
scored and counted the same way, and weighted voting or best-of-n over the finished solutions
is the baseline that REBASE is compared against.
"""

from __future__ import annotations

from collections.abc import Sequence

from rebase_agent.config import RebaseConfig
from rebase_agent.strategies.rebase import LevelSearch
from rebase_agent.tree import Node

__all__ = ("Sampling", "split_evenly")


def split_evenly(budget: int, count: int) -> list[int]:
    """``budget`` split over ``count`` slots as evenly as possible, the extra units first."""
    base, extra = divmod(budget, count)
    return [base + (i < extra) for i in range(count)]


class Sampling(LevelSearch):
    """Independent sampling: the budget is split evenly (N at the root, then 1 per path)."""

    def allocate(self, frontier: Sequence[Node], budget: int, config: RebaseConfig) -> list[int]:
        """Even widths; with one path per remaining sample, each path gets one child."""
        return split_evenly(budget, len(frontier))
