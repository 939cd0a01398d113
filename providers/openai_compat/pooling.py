"""Process reward models served by vLLM's ``/pooling`` endpoint (token classification).

vLLM serves a PRM with ``--runner pooling``; ``POST /pooling`` with ``{"model", "input": [...],
"task": "token_classify"}`` answers ``{"data": [{"index", "data": rows}], "usage"}``, where
``rows`` holds one class-probability row per step tag (``STEP`` pooling). Two PRMs:

- :class:`QwenPRMScorer`: Qwen2.5-Math-PRM. Chat-formatted input, steps joined by ``<extra_0>``
  (one after every step); the score is the positive-class probability (index 1) at each tag.
  ``vllm serve Qwen/Qwen2.5-Math-PRM-7B --runner pooling``.
- :class:`MathShepherdPoolingScorer`: Math-Shepherd-style step-tag PRMs. Input
  ``f"{problem} {step} ки\\n{step} ки..."``; the score is P(+) over the ``+``/``-`` pair at
  each tag.
  ``vllm serve peiyi9979/math-shepherd-mistral-7b-prm --runner pooling --pooler-config
  '{"pooling_type":"STEP","step_tag_id":12902,"returned_token_ids":[648,387]}'``.

Many partial solutions go in one request (``batch_size`` per request, requests concurrent);
scores are cached per prefix (see :class:`rebase_agent.prm.CachedScorer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from providers.openai_compat.concurrency import gather
from providers.openai_compat.endpoints import Endpoint, EndpointPool, UsesEndpoints
from providers.openai_compat.retry import RetryPolicy
from rebase_agent.exceptions import ScoringError
from rebase_agent.prm import MATH_SHEPHERD_TAG, CachedScorer, class_probability, math_shepherd_text
from rebase_agent.usage import record_scorer_tokens

__all__ = ("MathShepherdPoolingScorer", "PoolingScorer", "QwenPRMScorer")

QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


class PoolingScorer(CachedScorer, UsesEndpoints):
    """A whole-solution PRM on vLLM ``/pooling``; subclasses render the input and read a row.

    Args:
        model: The PRM's model name on the server.
        base_url: The server's base URL (``http://localhost:8001/v1``; ``/pooling`` is at the
            root), or several replicas.
        api_key: API key; ``None`` reads ``OPENAI_API_KEY`` or sends a placeholder.
        batch_size: Solutions per request.
        task: The ``task`` field sent; ``"token_classify"`` exists from vLLM 0.11 (0.10 called
            it ``"encode"``); ``None`` leaves the field out and the server uses the model's
            default pooler.
        max_concurrency: Requests in flight at once, per endpoint.
        timeout_s: Deadline of one request attempt.
        retry: Retry policy.
        endpoints: A ready :class:`EndpointPool` instead of ``base_url`` and the options above.
        cache_size: Prefix scores kept.
    """

    scores_all_steps = True
    positive_index = 1

    def __init__(
        self,
        model: str,
        base_url: str | Sequence[str] = "http://localhost:8001/v1",
        *,
        api_key: str | None = None,
        batch_size: int = 16,
        task: str | None = "token_classify",
        max_concurrency: int = 8,
        timeout_s: float = 300.0,
        retry: RetryPolicy | None = None,
        endpoints: EndpointPool | None = None,
        cache_size: int = 100_000,
    ) -> None:
        super().__init__(cache_size=cache_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.task = task
        self.endpoints = endpoints or EndpointPool(
            base_url,
            api_key=api_key,
            max_concurrency=max_concurrency,
            timeout_s=timeout_s,
            retry=retry,
        )

    def render(self, problem: str, steps: Sequence[str]) -> str:
        """The PRM's input text for one partial solution."""
        raise NotImplementedError

    async def score_solutions(
        self, problem: str, solutions: list[tuple[str, ...]]
    ) -> list[list[float]]:
        """Score every step of each solution, ``batch_size`` solutions per request."""
        batches = [
            solutions[i : i + self.batch_size] for i in range(0, len(solutions), self.batch_size)
        ]
        calls = [self._batch_call(problem, batch) for batch in batches]
        results = await gather(calls)
        return [row for rows in results for row in rows]

    def _batch_call(self, problem: str, batch: list[tuple[str, ...]]) -> Any:
        body: dict[str, Any] = {
            "model": self.model,
            "input": [self.render(problem, s) for s in batch],
        }
        if self.task is not None:
            body["task"] = self.task

        async def op(endpoint: Endpoint) -> list[list[float]]:
            data = await endpoint.post("/pooling", body, at_root=True)
            return self._read(data, len(batch), endpoint.root_url)

        return lambda: self.endpoints.call(op, path="/pooling", model=self.model, at_root=True)

    def _read(self, data: object, expected: int, url: str) -> list[list[float]]:
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise ScoringError(f"{url}/pooling: unexpected answer {str(data)[:200]!r}")
        usage = data.get("usage")
        if isinstance(usage, dict):
            record_scorer_tokens(int(usage.get("prompt_tokens") or 0))
        items = sorted(data["data"], key=lambda item: int(item.get("index", 0)))
        if len(items) != expected:
            raise ScoringError(f"{url}/pooling: sent {expected} inputs, got {len(items)} results")
        rows_per_item = []
        for item in items:
            rows = item.get("data")
            if isinstance(rows, list) and rows and not isinstance(rows[0], list):
                rows = [rows]  # a single step tag, flattened
            if not isinstance(rows, list):
                raise ScoringError(f"{url}/pooling: result without data: {str(item)[:200]!r}")
            rows_per_item.append([class_probability(r, self.positive_index) for r in rows])
        return rows_per_item


class QwenPRMScorer(PoolingScorer):
    """Qwen2.5-Math-PRM on vLLM ``/pooling``: P(positive) at each ``<extra_0>``.

    The input is the model's chat format (ChatML), rendered here so many solutions fit in one
    request: system prompt, the problem as the user turn, and the steps (stripped, with
    ``<extra_0>`` removed from their text) each followed by ``<extra_0>`` as the assistant turn.

    Args:
        system_prompt: The system turn (the model card's by default).
        **kwargs: See :class:`PoolingScorer`.
    """

    step_tag = "<extra_0>"

    def __init__(
        self,
        model: str = "Qwen/Qwen2.5-Math-PRM-7B",
        *args: Any,
        system_prompt: str = QWEN_PRM_SYSTEM,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, *args, **kwargs)
        self.system_prompt = system_prompt

    def render(self, problem: str, steps: Sequence[str]) -> str:
        """ChatML with ``<extra_0>`` after every step."""
        body = "".join(s.replace(self.step_tag, "").strip() + self.step_tag for s in steps)
        return (
            f"<|im_start|>system\n{self.system_prompt}<|im_end|>\n"
            f"<|im_start|>user\n{problem}<|im_end|>\n"
            f"<|im_start|>assistant\n{body}<|im_end|>\n"
        )


class MathShepherdPoolingScorer(PoolingScorer):
    """Math-Shepherd-style step-tag PRM on vLLM ``/pooling``: P(+) at each `` ки``.

    Serve it with ``STEP`` pooling and ``returned_token_ids`` = the ``+`` and ``-`` ids, in that
    order, so each row is ``[P(+), P(-)]``.
    """

    step_tag = MATH_SHEPHERD_TAG
    positive_index = 0

    def __init__(
        self, model: str = "peiyi9979/math-shepherd-mistral-7b-prm", *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(model, *args, **kwargs)

    def render(self, problem: str, steps: Sequence[str]) -> str:
        """``f"{problem} {step1} ки\\n{step2} ки..."``
        (:func:`~rebase_agent.prm.math_shepherd_text`)."""
        return math_shepherd_text(problem, steps, self.step_tag)
