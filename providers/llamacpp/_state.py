"""What the decode loop tracks per job, per prompt evaluation and per sampled sequence."""

from __future__ import annotations

from typing import Any

import numpy as np

from providers.llamacpp._jobs import EvalJob, GenJob, Job, StopScanner, new_sampler
from providers.llamacpp._lib import llama_cpp
from providers.llamacpp._sampling import new_rng

__all__ = ("Child", "Prefill", "State")


class Prefill:
    """Prompt tokens being evaluated into ``seq`` from position ``start``; ``reads`` are the
    positions whose logits are needed."""

    def __init__(self, seq: int, tokens: list[int], start: int, reads: set[int]) -> None:
        self.seq, self.tokens, self.start, self.reads = seq, tokens, start, reads
        self.done = 0
        self.chunk = 0
        self.rows: dict[int, int] = {}
        """Batch row of each read position evaluated by the last decode."""
        self.logits: dict[int, list[float]] = {}

    @property
    def end(self) -> int:
        """Position after the last prompt token."""
        return self.start + len(self.tokens)


class Child:
    """One sampled continuation of a generation job.

    A child forked when its parent's prompt has just been evaluated samples its first token from
    the parent's logits; one admitted later (the context was full) re-evaluates the prompt's
    last token itself, from position ``len(prompt) - 1``.
    """

    def __init__(self, job: GenJob, index: int, seq: int, limit: int) -> None:
        self.index, self.seq, self.limit = index, seq, limit
        self.temperature = job.temperature
        self.rng: np.random.Generator | None = None
        """Set when the child samples exactly from the whole vocabulary (temperature > 0, no
        top-p, no top-k), batched with numpy (:mod:`providers.llamacpp._sampling`)."""
        self.sampler: Any = None
        """llama.cpp's sampler chain otherwise (greedy, top-k, top-p)."""
        if job.temperature > 0.0 and job.top_p >= 1.0 and job.top_k == 0:
            self.rng = new_rng(job.seed, index)
        else:
            self.sampler = new_sampler(job.temperature, job.top_p, job.seed, index, job.top_k)
        self.drawn: int | None = None
        """The token drawn for this child from the last decode, by the batched sampler."""
        self.scanner = StopScanner(job.stop)
        self.generated: list[int] = []
        self.cells = 0
        """Cells evaluated for this child (counted against ``limit``)."""
        self.token = job.prompt[-1]
        self.pos = len(job.prompt) - 1
        self.row = -1

    def free(self) -> None:
        """Free the sampler chain."""
        if self.sampler is not None:
            llama_cpp.llama_sampler_free(self.sampler)
            self.sampler = None


class State:
    """The engine's progress on one job."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.started = False
        self.parent: int | None = None
        """The sequence holding the evaluated prompt, that children fork from."""
        self.prefill: Prefill | None = None
        self.next_child = 0
        self.n_done = 0
        self.waiting: list[Child] = []
        self.live: list[Child] = []

    @property
    def gen(self) -> GenJob:
        """The job, as a generation job."""
        assert isinstance(self.job, GenJob)
        return self.job

    @property
    def admitted(self) -> bool:
        """Nothing left to admit."""
        if isinstance(self.job, EvalJob):
            return self.started
        return self.next_child >= self.job.n
