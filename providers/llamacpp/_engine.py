"""The continuous-batching multi-sequence decode engine on llama.cpp's low-level API.

One :class:`Engine` owns one llama.cpp context with a unified KV cache (``kv_unified=True``) and
ONE decode loop (:class:`~providers.llamacpp._run.Run`) that jobs join while it runs:

* :meth:`Engine.submit` queues jobs from any thread; they join the loop between two
  ``llama_decode`` calls, so a request arriving while others decode starts at the next step;
* each prompt is evaluated once, into a parent sequence, starting after the longest prefix
  already cached (:class:`~providers.llamacpp._kvcache.SeqPool`);
* its ``n`` children fork the parent's cells (``llama_memory_seq_cp``, no copy) and each
  re-evaluates only the prompt's last token, so every child samples from fresh logits;
* every live child advances one token per ``llama_decode``, with its own sampler chain,
  stop-string scanner, EOS check and token limit; prompt chunks of newly admitted jobs (and
  scoring prompts, whose logits are read at their read positions) ride in the same batches;
* a finished child frees its slot at once (its cells stay as a cached prefix for the next depth
  until they are needed), so waiting work is admitted and the batch stays full.

Work is admitted only while its worst case (prompt + ``max_tokens`` per child) fits the context,
owners taking turns; what does not fit waits for cells to free up, with one log line saying so.
A job that can never fit fails alone. The engine is synchronous: call :meth:`Engine.advance`
from a worker thread, holding the model's lock (:class:`~providers.llamacpp._gather.Batcher`
does).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

import anyio.to_thread
import numpy as np

from providers.llamacpp._jobs import Job
from providers.llamacpp._kvcache import SeqPool
from providers.llamacpp._lib import llama_cpp
from providers.llamacpp._run import Run
from providers.llamacpp.model import LlamaModel
from rebase_agent.exceptions import ProviderError

__all__ = ("DecodeShape", "Engine", "EngineUser", "check_sizes")

logger = logging.getLogger(__name__)

_shared: weakref.WeakKeyDictionary[LlamaModel, Engine] = weakref.WeakKeyDictionary()
"""The open engine of each model that later users may join (:meth:`Engine.shared_on`)."""


class Engine:
    """A llama.cpp context with a unified KV cache and one continuous decode loop.

    Args:
        model: The loaded model.
        n_ctx: KV cells (tokens) shared by all sequences of the context.
        n_seq_max: Sequences the context can hold at once (running, evaluating or cached).
        n_batch: Most tokens per ``llama_decode`` call.
        n_threads: CPU threads (default: all cores for batches, half of them for one-token
            decodes, as llama-cpp-python does).
        prefix_cache: Keep finished sequences' cells to reuse shared prefixes later.
        max_cached_cells: Most cells held only by cached prefixes (default: ``n_ctx // 4``).
            Every decode attends over all occupied cells, so an unbounded cache slows it down.
        shareable: Let later users of ``model`` join this engine (:meth:`shared_on`), so that
            their work rides in the same decode loop (a scorer next to a provider).
        even_outputs: Pad decodes of an odd number of sampled rows to an even one (see
            :attr:`even_outputs`).
        n_ubatch: Rows llama.cpp computes at once, at most ``n_batch`` (default:
            :func:`default_ubatch`).

    Raises:
        ValueError: ``n_seq_max`` below 2 or ``n_ubatch`` below 1, or a recurrent model.
        RuntimeError: llama.cpp could not create the context.
    """

    def __init__(
        self,
        model: LlamaModel,
        *,
        n_ctx: int = 8192,
        n_seq_max: int = 128,
        n_batch: int = 512,
        n_threads: int | None = None,
        prefix_cache: bool = True,
        max_cached_cells: int | None = None,
        shareable: bool = False,
        even_outputs: bool = True,
        n_ubatch: int | None = None,
    ) -> None:
        check_sizes(n_seq_max=n_seq_max, n_ubatch=n_ubatch)
        if model.closed:
            raise RuntimeError(f"{model!r} is closed")
        if llama_cpp.llama_model_is_recurrent(model.ptr) or llama_cpp.llama_model_is_hybrid(
            model.ptr
        ):
            raise ValueError(
                f"{model.name} is a recurrent or hybrid model: its state cannot be forked between "
                "sequences, which the batched engine needs; use an attention-only model"
            )
        n_seq_max = min(n_seq_max, int(llama_cpp.llama_max_parallel_sequences()))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = max(n_batch, n_seq_max)
        params.n_ubatch = min(params.n_batch, n_ubatch or default_ubatch(model))
        params.n_seq_max = n_seq_max
        params.kv_unified = True
        params.swa_full = True  # sliding-window models keep full history, so prefixes fork
        params.no_perf = True
        cores = os.cpu_count() or 1
        # As llama-cpp-python: one-token decodes on half the cores, batches on all of them.
        params.n_threads = n_threads or max(1, cores // 2)
        params.n_threads_batch = n_threads or cores
        ctx = llama_cpp.llama_init_from_model(model.ptr, params)
        if not ctx:
            raise RuntimeError(
                f"llama.cpp could not create a context of {n_ctx} tokens for {model.name}"
            )
        self.model = model
        model.contexts += 1
        self.ctx = ctx
        self.n_ctx = int(llama_cpp.llama_n_ctx(ctx))
        self.n_seq_max = int(llama_cpp.llama_n_seq_max(ctx))
        self.n_batch = int(llama_cpp.llama_n_batch(ctx))
        self.n_ubatch = int(llama_cpp.llama_n_ubatch(ctx))
        """Rows llama.cpp computes at once (``n_ubatch``)."""
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        cached = self.n_ctx // 4 if max_cached_cells is None else max_cached_cells
        self.pool = SeqPool(ctx, self.n_seq_max, self.n_ctx, prefix_cache, cached)
        self.decode_calls = 0
        """``llama_decode`` calls so far (for tests and benchmarks)."""
        self.tokens_evaluated = 0
        """Tokens evaluated so far, prompt and generated (for tests and benchmarks)."""
        self.sampled_rows = 0
        """Of those, rows of a sequence being sampled (one token each; the rest are prompt
        rows): over :attr:`decode_calls`, the batch size generation ran at."""
        self.decode_s = 0.0
        """Seconds spent in ``llama_decode`` so far."""
        self.even_outputs = even_outputs
        """Give a decode of an odd number (3 or more) of sampled rows, and no prompt rows, one
        padding row with logits (a free sequence id and cell, for that decode only). llama.cpp's
        CPU matrix products for repacked weights take rows in groups and do the rest one at a
        time, and the output matrix dominates a small model's decode: on the 2-core x86 machine
        measured, 5 rows took 90 ms and 6 rows 70 ms (Gemma 3 270M, Q8_0 output matrix), and
        the tree workload of ``benchmarks/local_throughput.py`` ran 1.16-1.19x faster. In batches
        with prompt rows no gain was measured, so they are left alone. What is sampled is
        unchanged: each row's logits depend on its own sequence only."""
        self.padded_rows = 0
        """Padding rows decoded so far (:attr:`even_outputs`)."""
        self.trace: list[DecodeShape] | None = None
        """Set to a list to have every decode's shape appended to it (benchmarks: it walks
        every sequence's cells and the batch's rows)."""
        self.users = 1
        """Owners (a provider, a scorer) that :meth:`release` it; it closes with the last."""
        if shareable:
            _shared[model] = self
        self.inbox: deque[Job] = deque()
        """Jobs submitted and not yet in the loop."""
        self._closed = False
        self._running = threading.Lock()
        """Held by :meth:`advance` while it decodes, and by :meth:`close` while it frees: a
        close from another thread (an event loop torn down by a native cancellation, which
        anyio's shielding cannot stop) waits for the decode instead of freeing under it."""
        self._loop = Run(self)

    @staticmethod
    def shared_on(model: LlamaModel) -> Engine | None:
        """The open shareable engine on ``model``, with one more user; ``None`` if there is none.

        The caller :meth:`release` s it when done.
        """
        engine = _shared.get(model)
        if engine is None or engine._closed:
            return None
        engine.users += 1
        return engine

    def release(self) -> None:
        """One user is done: :meth:`close` once none is left."""
        self.users -= 1
        if self.users <= 0:
            self.close()

    def submit(self, jobs: Iterable[Job]) -> None:
        """Queue ``jobs`` to join the loop at its next step (thread-safe; never blocks)."""
        self.inbox.extend(jobs)

    @property
    def busy(self) -> bool:
        """Jobs are queued or in flight."""
        return bool(self.inbox) or self._loop.busy

    def advance(self, max_steps: int | None = None) -> list[Job]:
        """Decode until at least one job ends; return the jobs that ended (``[]``: idle).

        Before each step the queued jobs join (their ``prepare`` runs here); a cancelled job
        ends at the next step, its sequences removed. Never raises for a job's failure: the job
        ends with ``error`` set.

        Args:
            max_steps: Return after this many steps even if no job ended.
        """
        with self._running:
            steps = 0
            while True:
                ended = self._join()
                if self._closed:
                    closed = RuntimeError("the llama.cpp engine is closed")
                    return ended + self._loop.fail_all(closed)
                ended += self._loop.step()
                steps += 1
                if ended or not self.busy or (max_steps is not None and steps >= max_steps):
                    return ended

    def run(self, jobs: Iterable[Job]) -> None:
        """Submit ``jobs`` and :meth:`advance` until they are all done (synchronously)."""
        mine = list(jobs)
        self.submit(mine)
        while not all(job.done for job in mine):
            if not self.advance() and not self.busy:
                for job in mine:
                    if not job.done:
                        job.error, job.done = ProviderError("llama.cpp engine lost a job"), True

    def _join(self) -> list[Job]:
        """Move queued jobs into the loop; return those that ended before joining."""
        ended: list[Job] = []
        joining: list[Job] = []
        while self.inbox:
            job = self.inbox.popleft()
            if job.done:
                continue
            if self._closed or job.cancelled:
                if not job.cancelled:
                    job.error = RuntimeError("the llama.cpp engine is closed")
                job.done = True
            elif job.prepare is not None:
                try:
                    job.prepare(job)
                except Exception as exc:
                    job.error, job.done = exc, True
            if job.done:
                ended.append(job)
            else:
                joining.append(job)
        self._loop.add(joining)
        return ended

    def decode(self, n_tokens: int, sampled: int = 0, padded: int = 0) -> int:
        """Decode the first ``n_tokens`` of :attr:`batch` (the first ``sampled`` of them rows
        of sequences being sampled, the last ``padded`` rows padding, not counted as
        evaluated); return llama.cpp's status."""
        self.batch.n_tokens = n_tokens
        used = self.pool.ledger.used() if self.trace is not None else 0
        started = time.perf_counter()
        status = int(llama_cpp.llama_decode(self.ctx, self.batch))
        seconds = time.perf_counter() - started
        self.decode_s += seconds
        if status == 0:
            self.decode_calls += 1
            self.tokens_evaluated += n_tokens - padded
            self.sampled_rows += sampled
            self.padded_rows += padded
            if self.trace is not None:
                outputs = sum(1 for i in range(n_tokens) if self.batch.logits[i])
                shape = DecodeShape(n_tokens, sampled, outputs, padded, used, seconds)
                self.trace.append(shape)
        return status

    def put(self, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        """Set row ``i`` of the batch."""
        b = self.batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = logits

    def logits_row(self, i: int, ids: list[int]) -> list[float]:
        """The logits of tokens ``ids`` at output row ``i`` of the last decode."""
        ptr = llama_cpp.llama_get_logits_ith(self.ctx, i)
        return [float(ptr[t]) for t in ids]

    def logits_rows(self, n: int) -> np.ndarray:
        """The logits of the first ``n`` output rows of the last decode (a view, no copy)."""
        ptr = llama_cpp.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(n, self.model.n_vocab))

    def logits_at(self, i: int) -> np.ndarray:
        """The logits of batch row ``i`` of the last decode (a view, no copy)."""
        ptr = llama_cpp.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,))

    def sample(self, sampler: object, i: int) -> int:
        """Sample (and accept) a token with ``sampler`` from output row ``i``."""
        return int(llama_cpp.llama_sampler_sample(sampler, self.ctx, i))

    def seq_pos_max(self, seq: int) -> int:
        """Largest position ``seq`` holds in the KV cache (-1: none)."""
        return int(llama_cpp.llama_memory_seq_pos_max(self.pool.mem, seq))

    def clear_cache(self) -> None:
        """Free every cached prefix."""
        self.pool.clear()

    def close(self) -> None:
        """Free the context and its batch; jobs still queued or in flight fail.

        Thread-safe: an :meth:`advance` running in another thread stops at its next step (its
        jobs fail), and the context is freed after it returns.
        """
        if self._closed:
            return
        self._closed = True  # a running advance() sees it before its next decode
        with self._running:
            if _shared.get(self.model) is self:
                del _shared[self.model]
            self._join()
            self._loop.fail_all(RuntimeError("the llama.cpp engine is closed"))
            self.pool.clear()
            llama_cpp.llama_batch_free(self.batch)
            llama_cpp.llama_free(self.ctx)
            self.model.context_closed()


CPU_UBATCH = 32
"""Rows llama.cpp computes at once on the CPU (``n_ubatch``; 512 elsewhere). Its CPU flash
attention takes 64 query rows or more as tiles and skips a block of KV cells only when every
row of the tile masks it, so in a batch of many sequences on a unified KV cache each row
attends over every occupied cell; below 64 rows each row skips the cells it does not see.
It is a trade: ``benchmarks/decode_mix.py`` on the 2-core x86 machine (Gemma 3 270M, about
2,250 cells in use, 512 against 32 rows a ubatch, same rounds): 64 sampled rows 641 -> 516 ms,
22 sampled + 60 prompt rows 462 -> 428 ms, but 20 + 100 rows 568 -> 601 ms and a 256-token
prompt alone 948 -> 1,117 ms. On the eval workload of ``benchmarks/local_throughput.py`` (many
sequences, judge prompts beside them) 32 rows ran 1.16x faster."""


def check_sizes(*, n_seq_max: int, n_ubatch: int | None) -> None:
    """Refuse sizes no context can take, naming the field (before a model is loaded for it).

    Raises:
        ValueError: ``n_seq_max`` below 2 or ``n_ubatch`` below 1.
    """
    if n_seq_max < 2:
        raise ValueError(f"n_seq_max must be at least 2 (a parent and a child), got {n_seq_max}")
    if n_ubatch is not None and n_ubatch < 1:
        raise ValueError(f"n_ubatch must be at least 1, got {n_ubatch}")


def default_ubatch(model: LlamaModel) -> int:
    """``n_ubatch`` for ``model``: :data:`CPU_UBATCH` where it runs on the CPU, else 512."""
    on_cpu = model.n_gpu_layers == 0 or not llama_cpp.llama_supports_gpu_offload()
    return CPU_UBATCH if on_cpu else 512


class DecodeShape(NamedTuple):
    """One ``llama_decode`` of the engine (:attr:`Engine.trace`)."""

    rows: int
    """Tokens in the batch."""
    sampled: int
    """Of them, rows of sequences being sampled (the rest are prompt rows)."""
    outputs: int
    """Rows whose logits were computed: the sampled ones, a prompt's last token, a judge's
    read positions, padding (:attr:`Engine.even_outputs`)."""
    padded: int
    """Rows added only as padding (0 or 1)."""
    cells: int
    """KV cells in use before it (besides its own rows)."""
    seconds: float
    """Time inside ``llama_decode``."""


class EngineUser:
    """Closing for the provider and the scorer: each uses one :class:`Engine` on a model (a
    scorer may share its provider's)."""

    engine: Engine
    model: LlamaModel
    _released = False

    def close(self) -> None:
        """Release the engine: its context is freed with its last user (and the model once no
        context uses it, if it was loaded here).

        Call it when no request is running; :meth:`aclose` waits for that. Idempotent.
        """
        if not self._released:
            self._released = True
            self.engine.release()

    async def aclose(self) -> None:
        """Wait for running work, then :meth:`close` in a worker thread."""
        async with self.model.lock:
            await anyio.to_thread.run_sync(self.close)
