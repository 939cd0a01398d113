"""The ``eval`` progress bar (tqdm): problems done, accuracy so far, tokens, rate and ETA.

Accuracy is shown for each strategy at the largest budget, under the config's aggregation;
tokens count every search finished, including those a resumed run found already done.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rebase_agent.evaluation.results import EvalRow
from rebase_agent.evaluation.settings import EvalSettings

__all__ = ("ProgressBar",)


class ProgressBar:
    """An :class:`~rebase_agent.evaluation.runner.EvalProgress` drawn with tqdm on stderr.

    Args:
        settings: The run's settings (budgets and aggregation).
        enabled: Draw the bar; when ``False`` it only counts.
    """

    def __init__(self, settings: EvalSettings, enabled: bool = True) -> None:
        self.enabled = enabled
        self.aggregation = settings.search_config(1).aggregation
        self.top = settings.budgets[-1]
        self.correct: dict[str, list[int]] = {}
        self.total = 0
        self.done = 0
        """Problems complete (every search finished)."""
        self.tokens = 0
        self.new_tokens = 0
        self.started = time.monotonic()
        self.bar: Any = None

    def _count(self, row: EvalRow) -> None:
        self.tokens += row.result.usage.total_tokens
        for outcome in row.outcomes:
            if outcome.budget == self.top:
                tally = self.correct.setdefault(row.strategy, [0, 0])
                tally[0] += outcome.votes[self.aggregation].correct
                tally[1] += 1

    def begin(self, total_problems: int, done_problems: int, rows: list[EvalRow]) -> None:
        """Start the bar, counting the rows a resumed run already has."""
        from tqdm import tqdm

        for row in rows:
            self._count(row)
        self.total, self.done = total_problems, done_problems
        self.bar = tqdm(
            total=total_problems,
            initial=done_problems,
            unit="problem",
            disable=not self.enabled,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        self._postfix()

    def advance(self, row: EvalRow | None, problem_done: bool) -> None:
        """Count a finished search; move the bar when its problem is complete."""
        if row is not None:
            self._count(row)
            self.new_tokens += row.result.usage.total_tokens
        if problem_done:
            self.done += 1
            self.bar.update(1)
        self._postfix()

    def _postfix(self) -> None:
        parts = {f"{s}@{self.top}": f"{100 * c / n:.0f}%" for s, (c, n) in self.correct.items()}
        parts["tokens"] = f"{self.tokens:,}"
        elapsed = time.monotonic() - self.started
        if self.new_tokens and elapsed > 0:
            parts["tok/s"] = f"{self.new_tokens / elapsed:,.0f}"
        self.bar.set_postfix(parts, refresh=False)

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
