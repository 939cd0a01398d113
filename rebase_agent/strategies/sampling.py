"""Sampling: N independent solutions, generated step by step.

The problem gets all N children at depth 1; after that every open path gets exactly one child
per depth, so the paths never interact. A path whose expansion fails ends there (the failure is
counted in ``usage.failed_expansions`` and the node is marked ``failed``): its sample is not
handed to another path, which would make that path two samples and the solutions dependent, so
the search returns fewer than N solutions. Through the same machinery as REBASE, every step is
scored and counted the same way, and weighted voting or best-of-n over the finished solutions
is the baseline that REBASE is compared against.
"""

from __future__ import annotations

from collections.abc import Sequence

from rebase_agent.config import RebaseConfig
from rebase_agent.strategies.level import LevelSearch
from rebase_agent.tree import Node

__all__ = ("Sampling",)


class Sampling(LevelSearch):
    """Independent sampling: N children at the root, then one child per open path."""

    def allocate(self, frontier: Sequence[Node], budget: int, config: RebaseConfig) -> list[int]:
        """The whole budget to the root; one child to every other open node."""
        if len(frontier) == 1 and frontier[0].parent is None:
            return [budget]
        return [1] * len(frontier)
