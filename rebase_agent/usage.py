"""Token and request accounting for one search.

Providers report their tokens in every :class:`~rebase_agent.StepCompletion`. Scorers return bare
scores, so a scorer that knows what a call cost reports it with :func:`record_scorer_tokens`
from inside ``score()``; the search that made the call adds it to its :class:`Usage`, the one
that :func:`recording` made current around the search.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pydantic import BaseModel, Field

__all__ = ("DepthStats", "Usage", "record_scorer_tokens", "recording")


class DepthStats(BaseModel):
    """What one depth (one round of expansions) of a search did and how long it took."""

    depth: int
    """Depth of the nodes expanded in this round (0: the problem)."""
    expanded: int = 0
    """Nodes expanded (provider requests sent)."""
    children: int = 0
    """Steps sampled."""
    finished: int = 0
    """Children that finished a solution."""
    failed: int = 0
    """Expansions whose request finally failed (their budget stayed in the pool)."""
    budget: int = 0
    """Budget (samples) spread over the expanded nodes."""
    wall_s: float = 0.0


class Usage(BaseModel):
    """Everything a search spent."""

    provider_requests: int = 0
    """Provider requests sent, failed ones included."""
    failed_expansions: int = 0
    """Expansions whose provider request or scoring finally failed; the search went on."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    scorer_calls: int = 0
    scored_solutions: int = 0
    """Partial solutions sent to the scorer, over all calls."""
    scorer_prompt_tokens: int = 0
    """Tokens the scorer processed, where it reported them (see :func:`record_scorer_tokens`)."""
    scorer_completion_tokens: int = 0
    wall_s: float = 0.0
    depths: list[DepthStats] = Field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        """Every token the search paid for: policy and scorer, prompt and completion."""
        return (
            self.prompt_tokens
            + self.completion_tokens
            + self.scorer_prompt_tokens
            + self.scorer_completion_tokens
        )


_current_usage: ContextVar[Usage | None] = ContextVar("rebase_agent_usage", default=None)


@contextmanager
def recording(usage: Usage) -> Iterator[Usage]:
    """Make ``usage`` the one :func:`record_scorer_tokens` adds to, within the block.

    The search wraps each run in it; the previous current usage (if any) is restored on exit.
    Tasks started inside the block, and worker threads started with ``anyio.to_thread``, see
    the same usage, since they copy the context.

    Example::

        usage = Usage()
        with recording(usage):
            await scorer.score(request)
        print(usage.scorer_prompt_tokens)
    """
    token = _current_usage.set(usage)
    try:
        yield usage
    finally:
        _current_usage.reset(token)


def record_scorer_tokens(prompt_tokens: int, completion_tokens: int = 0) -> None:
    """Add a scorer call's token cost to the search that made the call.

    Call it from inside :meth:`Scorer.score` (or a worker thread started from it with
    ``anyio.to_thread``, which carries the context). Outside a search it does nothing.
    """
    usage = _current_usage.get()
    if usage is not None:
        usage.scorer_prompt_tokens += prompt_tokens
        usage.scorer_completion_tokens += completion_tokens
