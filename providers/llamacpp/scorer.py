"""The llama.cpp process reward model: :class:`LlamaCppScorer`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Literal

from providers.llamacpp._engine import Engine, EngineUser, check_sizes
from providers.llamacpp._gather import Batcher
from providers.llamacpp._jobs import EvalJob
from providers.llamacpp.model import LlamaModel
from providers.llamacpp.repack import Repack
from providers.llamacpp.templates import (
    DEFAULT_JUDGE_TEMPLATE,
    POLICY_JUDGE_QUESTION,
    ChatTemplate,
)
from rebase_agent.exceptions import ScoringError
from rebase_agent.prm import MATH_SHEPHERD_TAG, CachedScorer, math_shepherd_segments
from rebase_agent.prm import logit_label_probability as label_probability
from rebase_agent.usage import record_scorer_tokens

__all__ = ("LlamaCppScorer",)

logger = logging.getLogger(__name__)

YES = ("Yes", " Yes", "yes", " yes", "YES", " YES")
NO = ("No", " No", "no", " no", "NO", " NO")
PLUS = ("+", " +")
MINUS = ("-", " -")


class LlamaCppScorer(CachedScorer, EngineUser):
    """A process reward model on a local GGUF, read from next-token logits.

    Two modes, both batched over every partial solution of a request (and over concurrent
    requests, and, on the policy's model, with the policy's generation: see
    ``share_context``), reusing shared prompt prefixes from the KV cache:

    * ``"judge"`` (LLM-as-judge, any instruct or base model): for each step, a prompt
      (:data:`~providers.llamacpp.templates.DEFAULT_JUDGE_TEMPLATE`) showing the problem, the
      steps before it and the step, asking whether it is correct; the score is
      P(Yes) / (P(Yes) + P(No)), each summed over spelling variants (``Yes``, `` Yes``, ``yes``...).
    * ``"math_shepherd"`` (a Math-Shepherd-style PRM): ``problem step1<tag>step2<tag>...`` in one
      sequence, each piece tokenized on its own; the score of a step is P(+) / (P(+) + P(-)) at
      its tag. One evaluation scores every step of a solution.

    Label token ids come from the model's vocabulary (variants that are one token). Scores of
    prefixes already scored are cached, so a node's steps are never scored twice. Prompt tokens
    actually evaluated are reported with :func:`rebase_agent.record_scorer_tokens`.

    Args:
        model: A GGUF path, or a loaded :class:`LlamaModel` (e.g. the policy's).
        mode: ``"judge"`` or ``"math_shepherd"``.
        n_gpu_layers: Layers to offload when ``model`` is a path.
        n_ctx: KV cells of the scorer's own context.
        n_seq_max: Sequences at once.
        n_batch: Most tokens per ``llama_decode``.
        n_ubatch: Rows llama.cpp computes at once (default: 32 on the CPU, 512 on a GPU; as
            :class:`~providers.llamacpp.LlamaCppProvider`'s).
        n_threads: CPU threads (default: all cores; one-token decodes use half).
        judge_template: Format string with ``{problem}``, ``{previous}`` and ``{step}``.
        judge_prefix: The policy's prompt tokens for ``(problem, solution so far)``
            (``LlamaCppProvider.tokenize_prompt`` of the policy on the same model). When
            given, a step's judge prompt is instead the policy's prompt of the solution up to
            and including the step, then ``judge_question``: in the policy's context it starts
            with the very sequence that generated the step, which the prefix cache holds, so
            only the question is evaluated. The judge then reads the policy's prompt (its
            worked examples too), so its scores differ from ``judge_template``'s. Judge mode
            only, not with ``chat``.
        judge_question: What follows the policy's prompt with ``judge_prefix``.
        chat: Wrap the judge prompt in the model's chat template (a user turn).
        step_tag: Math-Shepherd step tag.
        positive: Positive label variants (default: Yes variants, or ``+`` for Math-Shepherd).
        negative: Negative label variants (default: No variants, or ``-``).
        cache_size: Step scores kept.
        share_context: When ``model`` is a loaded :class:`LlamaModel` whose provider was built
            first (``default_models`` does so), score in the provider's context: scoring prompts
            ride in the same ``llama_decode`` batches as generation, in one decode loop, and no
            second KV cache is allocated. ``n_ctx``, ``n_seq_max``, ``n_batch``, ``n_ubatch``
            and ``n_threads`` are then the provider's (the first two logged at INFO when they
            differ). ``False``: always a context of the scorer's own.
        verbose: Print llama.cpp's own log.
        repack: How the CPU weights load when ``model`` is a path (see :class:`LlamaModel`).

    Raises:
        ValueError: No label variant is a single token of the model's vocabulary.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | LlamaModel,
        *,
        mode: Literal["judge", "math_shepherd"] = "judge",
        n_gpu_layers: int = -1,
        n_ctx: int = 8192,
        n_seq_max: int = 128,
        n_batch: int = 512,
        n_ubatch: int | None = None,
        n_threads: int | None = None,
        judge_template: str = DEFAULT_JUDGE_TEMPLATE,
        judge_prefix: Callable[[str, str], list[int]] | None = None,
        judge_question: str = POLICY_JUDGE_QUESTION,
        chat: bool = False,
        step_tag: str = MATH_SHEPHERD_TAG,
        positive: tuple[str, ...] | None = None,
        negative: tuple[str, ...] | None = None,
        cache_size: int = 100_000,
        share_context: bool = True,
        verbose: bool = False,
        repack: Repack | None = None,
    ) -> None:
        super().__init__(cache_size=cache_size)
        check_sizes(n_seq_max=n_seq_max, n_ubatch=n_ubatch)
        self.model = LlamaModel.share_or_load(
            model, n_gpu_layers=n_gpu_layers, verbose=verbose, repack=repack
        )
        self.mode = mode
        self.scores_all_steps = mode == "math_shepherd"  # one sequence scores all its steps
        reading = "Math-Shepherd P(+)" if mode == "math_shepherd" else "judge P(Yes)"
        self.description = f"{self.model.name} {reading}"
        """A short name of this PRM for output (``Gemma 3 270m judge P(Yes)``)."""
        shepherd = mode == "math_shepherd"
        pos = self.model.single_token_ids(list(positive or (PLUS if shepherd else YES)))
        neg = self.model.single_token_ids(list(negative or (MINUS if shepherd else NO)))
        if not pos or not neg:
            raise ValueError(f"{self.model.name}: no label variant is a single token")
        self.labels, self.n_pos = pos + neg, len(pos)
        self.judge_template, self.step_tag = judge_template, step_tag
        if judge_prefix is not None and (mode != "judge" or chat):
            raise ValueError("judge_prefix needs mode='judge' and chat=False")
        self.judge_prefix = judge_prefix
        self._question = self.model.tokenize(judge_question, add_bos=False, special=False)
        self._chat: ChatTemplate | None = None
        if chat:
            source = self.model.chat_template
            if source is None:
                raise ValueError(f"chat=True but {self.model.name} has no chat template")
            self._chat = ChatTemplate(source, bos_token=self.model.token_text(self.model.bos))
        shared = Engine.shared_on(self.model) if share_context else None
        if shared is not None:
            self.engine = shared
            if (n_ctx, n_seq_max) != (shared.n_ctx, shared.n_seq_max):
                logger.info(
                    "%s scorer shares the policy's context (n_ctx=%d, n_seq_max=%d) instead of "
                    "its own (n_ctx=%d, n_seq_max=%d): pass share_context=False for its own",
                    self.model.name,
                    shared.n_ctx,
                    shared.n_seq_max,
                    n_ctx,
                    n_seq_max,
                )
        else:
            self.engine = Engine(
                self.model,
                n_ctx=n_ctx,
                n_seq_max=n_seq_max,
                n_batch=n_batch,
                n_ubatch=n_ubatch,
                n_threads=n_threads,
            )
        self._batcher = Batcher(self.engine, self.model.lock)

    # -- prompts --------------------------------------------------------------------------------

    def judge_tokens(self, problem: str, steps: tuple[str, ...]) -> list[int]:
        """Tokens of the judge prompt for the last of ``steps``."""
        if self.judge_prefix is not None:
            return self.judge_prefix(problem, "".join(steps)) + self._question
        text = self.judge_template.format(
            problem=problem, previous="".join(steps[:-1]), step=steps[-1].rstrip()
        )
        if self._chat is not None:
            text = self._chat.render(text, "")
        bos = self.model.token_text(self.model.bos)
        return self.model.tokenize(text, add_bos=not (bos and text.startswith(bos)))

    def shepherd_tokens(self, problem: str, steps: tuple[str, ...]) -> tuple[list[int], list[int]]:
        """Tokens of the Math-Shepherd input (:func:`rebase_agent.prm.math_shepherd_segments`,
        as the HTTP scorers send it) and the position of each tag's last token."""
        tokens: list[int] = []
        reads: list[int] = []
        for i, (text, read) in enumerate(math_shepherd_segments(problem, steps, self.step_tag)):
            tokens += self.model.tokenize(text, add_bos=i == 0, special=False)
            if read:
                reads.append(len(tokens) - 1)
        return tokens, reads

    def _job(self, problem: str, steps: tuple[str, ...]) -> EvalJob:
        """An evaluation job, tokenized later in the worker thread."""

        def prepare(job: EvalJob) -> None:
            if self.mode == "math_shepherd":
                job.tokens, job.read_at = self.shepherd_tokens(problem, steps)
            else:
                job.tokens = self.judge_tokens(problem, steps)
                job.read_at = [len(job.tokens) - 1]

        return EvalJob(tokens=[], read_at=[], labels=self.labels, prepare=prepare, owner=problem)

    # -- scoring --------------------------------------------------------------------------------

    async def score_last_steps(self, problem: str, prefixes: list[tuple[str, ...]]) -> list[float]:
        """The judge's P(Yes) for the last step of each prefix (the cache sends only new ones)."""
        rows = await self._evaluate(problem, prefixes)
        return [label_probability(row[0], self.n_pos) for row in rows]

    async def score_solutions(
        self, problem: str, solutions: list[tuple[str, ...]]
    ) -> list[list[float]]:
        """Math-Shepherd's P(+) at every step's tag, one sequence per solution."""
        rows = await self._evaluate(problem, solutions)
        return [[label_probability(r, self.n_pos) for r in row] for row in rows]

    async def _evaluate(
        self, problem: str, solutions: list[tuple[str, ...]]
    ) -> list[list[list[float]]]:
        """The label logits read for each solution, batched through the engine.

        Raises:
            ScoringError: llama.cpp failed, or a prompt does not fit the context.
        """
        jobs = [self._job(problem, steps) for steps in solutions]
        await self._batcher.submit(jobs)
        record_scorer_tokens(sum(job.prompt_evaluated for job in jobs), 0)
        for job in jobs:
            if job.error is not None:
                raise ScoringError(f"llama.cpp scoring failed: {job.error}") from job.error
        return [job.rows for job in jobs]
