"""The two protocols every plug-in implements, and the messages they exchange.

A :class:`Provider` samples the next reasoning step of a partial solution; a :class:`Scorer`
(a process reward model) scores every step of a batch of partial solutions. The search core talks
to nothing else, so a provider for a new server, or a new PRM, is one class with one method.

Steps are plain strings that join back into the solution exactly: ``"".join(steps)``. A provider
that stops at a delimiter keeps the delimiter at the end of the step (or re-appends it), so the next
request continues the same text. Each provider renders its own prompt (chat template, raw prefix)
from ``problem`` and ``steps``.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

__all__ = (
    "FinishReason",
    "PromptCounter",
    "Provider",
    "ScoreRequest",
    "Scorer",
    "StepCompletion",
    "StepRequest",
)

FinishReason = Literal["step", "eos", "length"]
"""Why a step ended: ``"step"`` at a step delimiter, ``"eos"`` when the model ended its output,
``"length"`` at the step's token limit."""


class StepRequest(BaseModel):
    """Ask for ``n`` sampled continuations of one partial solution, one reasoning step each."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    problem: str
    """The problem statement, as the user gave it."""
    steps: tuple[str, ...] = ()
    """The steps so far; ``"".join(steps)`` is the partial solution."""
    n: int = Field(1, ge=1)
    """How many continuations to sample."""
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)
    """Token limit of one step."""
    stop: tuple[str, ...] = ("\n\n",)
    """Step delimiters. A step that ends at one keeps it at its end."""
    seed: int | None = None
    """Sampling seed, where the backend supports one; ``None`` for unseeded sampling."""

    @property
    def depth(self) -> int:
        """The depth of the node being expanded (0 for the problem alone)."""
        return len(self.steps)


class StepCompletion(BaseModel):
    """One sampled step."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    """The step's text, ending with the delimiter when ``finish_reason == "step"``."""
    finish_reason: FinishReason
    prompt_tokens: int = Field(0, ge=0)
    """Prompt tokens the backend processed for this completion (its share, when ``n > 1``)."""
    completion_tokens: int = Field(0, ge=0)
    continuations: int = Field(0, ge=0)
    """Requests beyond the first that this step took, each sending the partial solution and
    the step so far (a :class:`~rebase_agent.calculator.CalculatorProvider`'s continuations);
    0 for a step sampled in one request."""
    continuation_context_tokens: int = Field(0, ge=0)
    """Over those continuations, the step's own generated tokens each one sent after the
    partial solution."""


class ScoreRequest(BaseModel):
    """Ask a process reward model to score every step of each partial solution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    problem: str
    solutions: tuple[tuple[str, ...], ...]
    """Partial solutions, each a tuple of steps."""


@runtime_checkable
class Provider(Protocol):
    """A policy model that samples reasoning steps.

    Implementations must return exactly ``request.n`` completions, must be safe to call
    concurrently from many tasks, and must not block the event loop (run blocking work with
    ``anyio.to_thread.run_sync``). Cancellation of the calling task must cancel the request.
    """

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        """Sample ``request.n`` next steps of the partial solution in ``request``."""
        ...


@runtime_checkable
class PromptCounter(Protocol):
    """A provider that can say how long a problem's prompt is, with no steps after it.

    Offered by providers whose ``prompt_tokens`` count only what their prompt cache did not
    already hold (the local llama.cpp provider), so that an evaluation can price every request's
    whole prompt, as a server without a cache would evaluate it, however much was cached.
    """

    async def count_prompt_tokens(self, problem: str) -> int | None:
        """Tokens of the prompt for ``problem`` alone; ``None`` when this provider cannot tell."""
        ...


@runtime_checkable
class Scorer(Protocol):
    """A process reward model.

    ``score`` returns, for each solution in the request, one score per step (higher is better).
    Scores are usually probabilities in [0, 1]; any finite float works, since the search uses a
    numerically stable softmax. Token usage, where the scorer knows it, is reported with
    :func:`rebase_agent.record_scorer_tokens`.
    """

    async def score(self, request: ScoreRequest) -> list[list[float]]:
        """Score every step of every partial solution in ``request``."""
        ...
