"""Search configuration: one frozen, validated pydantic model.

Every field is checked when the config is built, so a bad value fails with an error that names
the field and the value before any request is sent.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = (
    "Aggregation",
    "AnswerEquivalence",
    "RebaseConfig",
    "RewardReading",
    "Rounding",
    "StrategyName",
)

StrategyName = Literal["rebase", "sampling", "beam", "mcts", "dvts"]
Rounding = Literal["greedy_ceil", "largest_remainder"]
RewardReading = Literal["last", "min", "prod", "mean"]
Aggregation = Literal["weighted_majority", "majority", "best_of_n"]
AnswerEquivalence = Literal["math_verify", "normalized"]


class RebaseConfig(BaseModel):
    """How a search spends its budget and picks its answer.

    The defaults follow the released REBASE code (``hype-parameters/rebase.yaml``), except
    that the depth cap and step size are fields here.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    budget: int = Field(16, ge=1, le=100_000)
    """Number of samples N: how many solutions the search may finish."""
    balance_temperature: float = Field(0.2, gt=0.0)
    """REBASE's T_b: lower puts more of the budget on the best nodes (paper 0.1, code 0.2)."""
    rounding: Rounding = "greedy_ceil"
    """``greedy_ceil``: the released code's allocation (nodes by reward, each gets
    ``ceil(B·w_j / sum of w not yet allocated)``); ``largest_remainder``: the paper's
    ``Round(B·softmax)`` made to sum exactly to B."""
    truncation_ratio: float | None = Field(None, gt=0.0, le=1.0)
    """Keep only the best ``ceil(ratio × open nodes)`` before the softmax (the released code's
    ``softmax_with_truncation``); ``None`` keeps all."""
    step_delimiters: tuple[str, ...] = ("\n\n",)
    """Strings that end a reasoning step (the provider's stop strings)."""
    max_step_tokens: int = Field(256, ge=1)
    """Token limit of one step (the provider's ``max_tokens``)."""
    max_solution_tokens: int | None = Field(1024, ge=1)
    """Most generated tokens in one solution, every step on its path counted (the paper: 1024).
    Each step's ``max_tokens`` is clipped to what the path has left; a path that reaches the
    cap without a final answer ends as unfinished (never a candidate, and its sample is spent,
    as in the released code); one whose last step states an answer, or ends the output, is
    finished. ``None``: no cap (a path may reach ``max_depth × max_step_tokens``)."""
    max_depth: int = Field(25, ge=1, le=1000)
    """Most steps in a solution; nodes still open at this depth are reported as unfinished."""
    temperature: float = Field(1.0, ge=0.0)
    """Sampling temperature of the policy."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    """Base seed: each request gets a seed derived from it and the node it expands."""
    reward: RewardReading = "last"
    """How a node's reward is read from its step scores, for the search and for voting."""
    aggregation: Aggregation = "weighted_majority"
    """How the final answer is chosen from the finished solutions."""
    beam_width: int = Field(4, ge=1)
    """Beam search and DVTS: children per kept beam (search-and-learn's M). DVTS grows
    ``budget / beam_width`` subtrees, so ``budget`` must be a multiple of it."""
    mcts_expansions: int | None = Field(None, ge=1)
    """MCTS: tree expansions (provider requests, rollouts not counted); ``None``: ``budget``."""
    mcts_token_budget: int | None = Field(None, ge=1)
    """MCTS: stop once the search has generated this many completion tokens (rollouts
    included); ``None``: no token limit."""
    mcts_exploration: float = Field(1.0, ge=0.0)
    """MCTS: the UCT exploration constant C."""
    mcts_root_children: int = Field(4, ge=1)
    """MCTS: children of the root (the paper used 4/8/16 for 32/64/128 expansions)."""
    mcts_children: int = Field(2, ge=1)
    """MCTS: children of every other expanded node."""
    mcts_rollout: bool = True
    """MCTS: roll out from each expanded node to a finished solution and back up its reward
    (the paper's MCTS); ``False`` backs up the best new child's reward."""
    mcts_batch_size: int = Field(4, ge=1)
    """MCTS: leaves selected (with virtual loss) and expanded concurrently; 1 is classic MCTS."""
    answer_equivalence: AnswerEquivalence = "math_verify"
    """How answers are compared for voting: with math-verify (numbers, LaTeX), or as
    normalised strings (for tasks that are not math)."""
    answer_timeout_s: float = Field(5.0, gt=0.0)
    """Time limit for comparing the answers of one search with math-verify."""
    max_concurrent_requests: int = Field(4096, ge=1)
    """Provider requests in flight at once, across every problem a search object solves.

    A safety cap, not a throttle: providers bound their own concurrency (the HTTP provider's
    adaptive per-endpoint limit backs off on 429, 503 and rising latency; the llama.cpp
    provider queues what does not fit its context), so the default (32 problems at budget 64
    fan out to about 2,000) holds no search back. Lower it for a provider that does not bound
    itself."""
    max_concurrent_scores: int = Field(4096, ge=1)
    """Scorer calls in flight at once, likewise (a safety cap; scorers bound themselves)."""
    timeout_s: float | None = Field(None, gt=0.0)
    """Wall-clock limit of one solve; on expiry :class:`~rebase_agent.SearchTimeout` carries the
    partial result."""

    @field_validator("step_delimiters")
    @classmethod
    def _delimiters_not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("needs at least one delimiter")
        if any(not d for d in value):
            raise ValueError(f"delimiters must be non-empty strings, got {value!r}")
        return value
