"""Beam search with PRM-pruned beams, as in search-and-learn (``sal/search/beam_search.py``).

At each depth the open nodes are ranked by reward and the best ``ceil(B / M)`` are kept
(M = ``beam_width``); each kept beam gets about M children, so the depth samples exactly the
remaining budget B, like REBASE. Unlike search-and-learn, finished beams take their sample out
of the budget, so beam search never produces more than N solutions (its issue #42) and is
compared with REBASE and sampling at the same number of samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rebase_agent.allocation import split_evenly
from rebase_agent.config import RebaseConfig
from rebase_agent.strategies.level import LevelSearch
from rebase_agent.tree import Node

__all__ = ("BeamSearch",)


class BeamSearch(LevelSearch):
    """Keep the ``ceil(B / beam_width)`` best nodes; split B evenly over them."""

    def allocate(self, frontier: Sequence[Node], budget: int, config: RebaseConfig) -> list[int]:
        """Widths of about ``beam_width`` for the best nodes, 0 for the rest."""
        keep = min(len(frontier), max(1, math.ceil(budget / config.beam_width)))
        ranked = sorted(range(len(frontier)), key=lambda i: -frontier[i].reward)
        widths = [0] * len(frontier)
        for i, width in zip(ranked[:keep], split_evenly(budget, keep), strict=True):
            widths[i] = width
        return widths
