"""Generative PRMs and LLM judges, scored from the first token's ``top_logprobs``.

They run on any OpenAI-compatible server that returns logprobs (vLLM, SGLang, llama-server,
Ollama ≥ 0.12.11 on ``/v1``, OpenAI chat models that are not reasoning models). Each request
asks for one token at temperature 0 and reads P(positive)/(P(positive)+P(negative)) (see
:func:`rebase_agent.prm.label_probability`). Each scores the *last* step of a prefix, one
request per prefix not yet scored (cached, so a node's steps are never re-scored).

- :class:`MathShepherdScorer`: Math-Shepherd on ``/v1/completions``: the prompt ends in the
  last step's `` ки`` tag; labels ``+``/``-``.
- :class:`RLHFlowScorer`: RLHFlow PRMs on ``/v1/chat/completions``: a user turn per step, an
  assistant ``+`` after each earlier one; labels ``+``/``-``.
- :class:`~.judge.JudgeScorer` (in :mod:`.judge`): any instruction model asked whether the last
  step is correct; labels ``Yes``/``No``; chat or completions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from providers.openai_compat.batching import Coalescer, split_into
from providers.openai_compat.concurrency import gather
from providers.openai_compat.endpoints import Endpoint, EndpointPool, UsesEndpoints
from providers.openai_compat.requests import read_usage
from providers.openai_compat.retry import RetryPolicy
from rebase_agent.allocation import split_proportionally
from rebase_agent.exceptions import ScoringError
from rebase_agent.prm import (
    MATH_SHEPHERD_LABELS,
    MATH_SHEPHERD_TAG,
    CachedScorer,
    label_probability,
    math_shepherd_text,
)
from rebase_agent.usage import record_scorer_tokens

__all__ = ("AUTO_BATCH_SIZE", "LogprobScorer", "MathShepherdScorer", "RLHFlowScorer")

AUTO_BATCH_SIZE = 64
"""Prompts per ``/completions`` request a judge sends where its probe finds vLLM or SGLang."""

logger = logging.getLogger("providers.openai_compat")


@dataclass(frozen=True)
class _Call:
    """One score call's prefixes (the coalescer's member)."""

    problem: str
    prefixes: list[tuple[str, ...]]


_Scored = tuple[list[float], tuple[int, int]]
"""A call's scores and its prompt and completion tokens."""


class LogprobScorer(CachedScorer, UsesEndpoints):
    """A last-step scorer that reads label probabilities from ``top_logprobs``.

    Args:
        model: The model name on the server.
        base_url: The base URL, or several replicas.
        api_key: API key; ``None`` reads ``OPENAI_API_KEY`` or sends a placeholder.
        top_logprobs: How many top tokens to ask for (vLLM and OpenAI chat allow 20, OpenAI
            completions 5).
        batch_size: Prompts per ``/v1/completions`` request (vLLM, SGLang, llama-server and
            OpenAI accept a list of prompts; llama-cpp-python's server does not). Chat requests
            carry one conversation each. Above 1, the score calls for one problem that arrive
            together (a depth's nodes) share requests too (:mod:`.batching`), each call's
            scorer tokens its share of theirs. ``None`` (the default): 1, or
            :data:`AUTO_BATCH_SIZE` where a judge's probe finds vLLM or SGLang and reads
            ``/completions``.
        max_concurrency: Requests in flight at once, per endpoint, fixed; ``None`` (the
            default) adapts to the server, as the provider's limit does (see
            :class:`~.endpoints.EndpointPool`).
        timeout_s: Deadline of one request attempt.
        retry: Retry policy.
        extra_body: More request fields (e.g. ``{"chat_template_kwargs":
            {"enable_thinking": False}}`` for thinking models).
        endpoints: A ready :class:`EndpointPool` instead of ``base_url`` and the options above.
        cache_size: Prefix scores kept.
    """

    api: Literal["chat", "completions"] = "chat"
    positive: tuple[str, ...] = MATH_SHEPHERD_LABELS[0]
    negative: tuple[str, ...] = MATH_SHEPHERD_LABELS[1]

    def __init__(
        self,
        model: str,
        base_url: str | Sequence[str] = "http://localhost:8001/v1",
        *,
        api_key: str | None = None,
        top_logprobs: int = 20,
        batch_size: int | None = None,
        max_concurrency: int | None = None,
        timeout_s: float = 300.0,
        retry: RetryPolicy | None = None,
        extra_body: Mapping[str, Any] | None = None,
        endpoints: EndpointPool | None = None,
        cache_size: int = 100_000,
    ) -> None:
        super().__init__(cache_size=cache_size)
        self.model = model
        self.top_logprobs = top_logprobs
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size or 1
        self._batch_size_given = batch_size is not None
        self.extra_body = dict(extra_body or {})
        self.endpoints = endpoints or EndpointPool(
            base_url,
            api_key=api_key,
            max_concurrency=max_concurrency,
            timeout_s=timeout_s,
            retry=retry,
        )
        self.unconfident = 0
        """Scores given 0.5 because neither label was among the top tokens."""
        self._coalescer: Coalescer[_Call, _Scored] = Coalescer(
            self._score_together,
            lambda call: self._score_counted(call.problem, call.prefixes),
            max_weight=16 * self.batch_size,
        )

    def use_batch_size(self, server: str) -> None:
        """Where ``batch_size`` was not given: :data:`AUTO_BATCH_SIZE` prompts a request on
        vLLM and SGLang (which take a list of prompts) in ``completions``, else as it is."""
        chosen = self._batch_size_given or self.api != "completions"
        if not chosen and server in ("vllm", "sglang"):
            self.batch_size = AUTO_BATCH_SIZE
            self._coalescer.max_weight = 16 * AUTO_BATCH_SIZE

    def prompt(self, problem: str, steps: Sequence[str]) -> str:
        """The completions prompt, ending where the label is predicted."""
        raise NotImplementedError

    def messages(self, problem: str, steps: Sequence[str]) -> list[dict[str, str]]:
        """The chat messages, ending where the label is predicted."""
        raise NotImplementedError

    async def score_last_steps(self, problem: str, prefixes: list[tuple[str, ...]]) -> list[float]:
        """Score the last step of each prefix: one request per prefix (chat) or per
        ``batch_size`` prefixes (completions), concurrently; with ``batch_size`` above 1, the
        prefixes of calls for the same problem that arrive together share requests."""
        if self.api == "completions" and self.batch_size > 1:
            call = _Call(problem, prefixes)
            scores, tokens = await self._coalescer.submit(problem, call, len(prefixes))
        else:
            scores, tokens = await self._score_counted(problem, prefixes)
        record_scorer_tokens(*tokens)  # in the caller's search (its share, when batched)
        return scores

    async def _score_counted(self, problem: str, prefixes: list[tuple[str, ...]]) -> _Scored:
        """The prefixes' scores and tokens; on a failure the tokens already paid for are
        recorded in this task's search before the error goes on."""
        tokens = [0, 0]
        try:
            scores = await self._score_groups(problem, prefixes, tokens)
        except BaseException:
            record_scorer_tokens(tokens[0], tokens[1])
            raise
        return scores, (tokens[0], tokens[1])

    async def _score_together(self, calls: Sequence[_Call]) -> list[_Scored]:
        """The calls' prefixes in shared requests; each call's scores and share of the tokens
        (by its number of prefixes)."""
        every = [prefix for call in calls for prefix in call.prefixes]
        scores, tokens = await self._score_counted(calls[0].problem, every)
        sizes = [len(call.prefixes) for call in calls]
        prompt_shares, completion_shares = (split_proportionally(t, sizes) for t in tokens)
        return [
            (part, (p, c))
            for part, p, c in zip(
                split_into(scores, sizes), prompt_shares, completion_shares, strict=True
            )
        ]

    async def _score_groups(
        self, problem: str, prefixes: list[tuple[str, ...]], tokens: list[int]
    ) -> list[float]:
        """Score the prefixes in requests of ``batch_size`` (completions) or one each (chat),
        concurrently, adding their prompt and completion tokens to ``tokens``."""
        size = self.batch_size if self.api == "completions" else 1
        groups = [prefixes[i : i + size] for i in range(0, len(prefixes), size)]
        path = "/completions" if self.api == "completions" else "/chat/completions"

        def call(group: list[tuple[str, ...]]) -> Any:
            async def op(endpoint: Endpoint) -> list[float]:
                found, used = await self._request(endpoint, problem, group)
                tokens[0] += used[0]
                tokens[1] += used[1]
                return [self._read(logprobs) for logprobs in found]

            return lambda: self.endpoints.call(op, path=path, model=self.model)

        results = await gather([call(group) for group in groups])
        return [score for scores in results for score in scores]

    def _read(self, logprobs: dict[str, float]) -> float:
        result = label_probability(logprobs, self.positive, self.negative)
        if not result.confident:
            self.unconfident += 1
            logger.debug("%s: neither label in the top tokens %s", self.model, logprobs)
        return result.score

    async def _request(
        self, endpoint: Endpoint, problem: str, group: list[tuple[str, ...]]
    ) -> tuple[list[dict[str, float]], tuple[int, int]]:
        """One request for the group's prefixes; the top logprobs of each first token."""
        where = f"{endpoint.base_url} (model {self.model!r})"
        missing = f"{where}: answer has no logprobs; does the server return them?"
        found: list[dict[str, float]] = []
        if self.api == "completions":
            # Plain JSON on the provider's own hot path, as the provider's requests go.
            prompts = [self.prompt(problem, steps) for steps in group]
            body: dict[str, Any] = {"model": self.model}
            body["prompt"] = prompts if len(prompts) > 1 else prompts[0]
            body.update(max_tokens=1, temperature=0.0, logprobs=self.top_logprobs)
            body.update(self.extra_body)
            answer = await endpoint.post("/completions", body)
            raw = answer.get("choices") if isinstance(answer, dict) else None
            if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
                raise ScoringError(f"{where}: unexpected answer {str(answer)[:200]!r}")
            if len(raw) != len(group):
                raise ScoringError(f"{where}: sent {len(group)} prompts, got {len(raw)} choices")
            for choice in sorted(raw, key=lambda c: int(c.get("index") or 0)):
                top = _first_token_top(choice.get("logprobs"))
                if top is None:
                    raise ScoringError(missing)
                found.append(top)
            return found, read_usage(answer.get("usage"))
        (steps,) = group
        chat = await endpoint.client.chat.completions.create(
            model=self.model,
            messages=self.messages(problem, steps),  # type: ignore[arg-type]
            max_tokens=1,
            temperature=0.0,
            logprobs=True,
            top_logprobs=self.top_logprobs,
            extra_body=self.extra_body,
        )
        usage = chat.usage
        content = (
            chat.choices[0].logprobs.content if chat.choices and chat.choices[0].logprobs else None
        )
        if not content:
            raise ScoringError(missing)
        top = {t.token: t.logprob for t in content[0].top_logprobs}
        top.setdefault(content[0].token, content[0].logprob)
        found.append(top)
        return found, (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)


class MathShepherdScorer(LogprobScorer):
    """Math-Shepherd PRM through ``/v1/completions`` logprobs: P(+) after the last `` ки``."""

    api = "completions"
    step_tag = MATH_SHEPHERD_TAG

    def prompt(self, problem: str, steps: Sequence[str]) -> str:
        """``f"{problem} {step1} ки\\n{step2} ки"``: the model predicts ``+``/``-`` next
        (:func:`~rebase_agent.prm.math_shepherd_text`)."""
        return math_shepherd_text(problem, steps, self.step_tag)


class RLHFlowScorer(LogprobScorer):
    """RLHFlow PRMs (``RLHFlow/Llama3.1-8B-PRM-*``): a user turn per step, assistant ``+``."""

    def messages(self, problem: str, steps: Sequence[str]) -> list[dict[str, str]]:
        """User turns ``problem + " " + step1``, ``step2``, ...; ``+`` after each earlier one."""
        messages: list[dict[str, str]] = []
        for i, step in enumerate(steps):
            if i:
                messages.append({"role": "assistant", "content": "+"})
            content = f"{problem} {step.strip()}" if i == 0 else step.strip()
            messages.append({"role": "user", "content": content})
        return messages


def _first_token_top(lp: object) -> dict[str, float] | None:
    """The first token's top logprobs of a ``/v1/completions`` choice (its decoded
    ``logprobs``), in either layout: OpenAI's (``top_logprobs: [{token: logprob}]`` with
    ``tokens`` and ``token_logprobs``) or the chat layout llama-server uses there (``content:
    [{token, logprob, top_logprobs: [{token, logprob}]}]``); ``None`` when it has neither."""
    if not isinstance(lp, dict):
        return None
    tops, tokens, values = lp.get("top_logprobs"), lp.get("tokens"), lp.get("token_logprobs")
    if isinstance(tops, list) and tops:
        first_top = tops[0] if isinstance(tops[0], dict) else {}
        top = {str(t): float(v) for t, v in first_top.items() if isinstance(v, int | float)}
        first_value = values[0] if isinstance(values, list) and values else None
        if isinstance(tokens, list) and tokens and isinstance(first_value, int | float):
            top.setdefault(str(tokens[0]), float(first_value))
        return top
    content = lp.get("content")
    if not isinstance(content, list) or not content or not isinstance(content[0], dict):
        return None
    first = content[0]
    top = {
        str(t["token"]): float(t["logprob"])
        for t in first.get("top_logprobs") or []
        if isinstance(t, dict) and "token" in t and isinstance(t.get("logprob"), int | float)
    }
    if isinstance(first.get("token"), str) and isinstance(first.get("logprob"), int | float):
        top.setdefault(first["token"], float(first["logprob"]))
    return top or None
