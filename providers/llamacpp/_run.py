"""The engine's continuous decode loop (see :mod:`providers.llamacpp._engine`).

A :class:`Run` holds every job in flight on one context and advances them all by one
``llama_decode`` per :meth:`Run.step`. Jobs join between steps (:meth:`Run.add`) and leave as
soon as they are done, so the batch refills while it runs. A job that cannot run (its prompt is
larger than the context, a per-job error) fails alone: only its ``error`` is set.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

import numpy as np

from providers.llamacpp._jobs import EvalJob, Finish, GenJob, GenOutput, Job, decode_text
from providers.llamacpp._kvcache import common_prefix
from providers.llamacpp._sampling import draw_rows
from providers.llamacpp._state import Child, Prefill, State
from rebase_agent.exceptions import ProviderError

if TYPE_CHECKING:
    from providers.llamacpp._engine import Engine

__all__ = ("SHARE_MIN", "Run")

logger = logging.getLogger("providers.llamacpp")

Admission = Literal["admitted", "full", "defer"]
"""What one admission attempt did: took the unit, found no room (admission stops), or left
the job for a later step without blocking the others."""

SHARE_MIN = 16
"""Leading tokens a new prompt must share with one being evaluated to wait for it (see
:meth:`Run._shares_in_flight`)."""


def _tokens(job: Job) -> list[int]:
    return job.prompt if isinstance(job, GenJob) else job.tokens


class Run:
    """The jobs in flight on one engine, advanced one decode at a time; see :meth:`step`.

    Admission is fair across owners (:attr:`~providers.llamacpp._jobs.GenJob.owner`, e.g. the
    problem of a search): each round admits one unit of work (a prompt, or one more continuation)
    per owner, owners in the order of their oldest waiting job, while the worst case of that unit
    fits the free cells and sequence ids. The first unit that does not fit ends admission for
    this step, so a large job is never starved by smaller ones arriving after it. A prompt that
    shares a long prefix with one being evaluated waits for it (a step or two) and forks it.
    """

    def __init__(self, engine: Engine) -> None:
        self.e = engine
        self.pool = engine.pool
        self.states: list[State] = []
        self.warned = False

    @property
    def busy(self) -> bool:
        """Some job is not done yet."""
        return bool(self.states)

    def add(self, jobs: Iterable[Job]) -> None:
        """Let ``jobs`` join at the next step (in this order, after the jobs already in)."""
        self.states += [State(job) for job in jobs if not job.done]

    def step(self) -> list[Job]:
        """Admit what fits, decode one batch, sample; return the jobs that ended in this step.

        Never raises for a job's failure: the job gets ``error`` set and is returned as ended.
        A failed ``llama_decode`` fails the jobs that had rows in that batch.
        """
        try:
            self._step()
        except Exception as exc:  # an engine bug: fail what is in flight rather than hang
            for st in self.states:
                self._fail(st, exc)
        ended = [st.job for st in self.states if st.job.done]
        self.states = [st for st in self.states if not st.job.done]
        return ended

    def _step(self) -> None:
        for st in self.states:
            if st.job.cancelled and not st.job.done:
                self._release(st)
                st.job.done = True
        self._admit()
        self._fork_late()
        n, sampled = self._fill()
        if n == 0 and self._in_flight():
            for st in self.states:
                self._fail(st, ProviderError("llama.cpp engine stalled with nothing to decode"))
        elif n > 0:
            pad = self._pad(n, sampled) if self.e.even_outputs else None
            padded = 0 if pad is None else 1
            try:
                self._decode(n + padded, sampled, padded)
            except ProviderError as exc:
                for st in self.states:
                    if st.live or (st.prefill is not None and st.prefill.chunk):
                        self._fail(st, exc)
            finally:
                if pad is not None:
                    self.pool.drop(pad)
            self._draw_live()
            for st in self.states:
                if not st.job.done:
                    try:
                        self._collect(st)
                    except Exception as exc:  # a per-job bug (e.g. a sampler): that job only
                        self._fail(st, exc)

    def fail_all(self, exc: BaseException) -> list[Job]:
        """Fail every job in flight with ``exc`` (the engine is closing); return them."""
        for st in self.states:
            self._fail(st, exc)
        ended, self.states = [st.job for st in self.states], []
        return ended

    def _in_flight(self) -> bool:
        return any(st.prefill or st.live or st.waiting for st in self.states)

    def _fail(self, st: State, exc: BaseException) -> None:
        if not st.job.done:
            self._release(st)
            st.job.error, st.job.done = exc, True

    # -- admission: only what fits the context's cells and sequence ids ---------------------------

    def _admit(self) -> None:
        deferred: set[State] = set()
        while True:
            pending = [st for st in self.states if not st.admitted and not st.job.done]
            if not pending:
                self.warned = False
                return
            pending = [st for st in pending if st not in deferred]
            if not pending:
                return
            owners: set[object] = set()
            for st in pending:
                owner = st.job.owner if st.job.owner is not None else id(st)
                if owner in owners:
                    continue
                owners.add(owner)
                try:
                    admitted = self._admit_one(st)
                except Exception as exc:  # this job can never run: it fails alone
                    self._fail(st, exc)
                    continue
                if admitted == "defer":
                    deferred.add(st)
                elif admitted == "full":
                    self._warn_full()
                    return

    def _warn_full(self) -> None:
        if not self.warned and self._in_flight():
            self.warned = True
            logger.info(
                "llama.cpp context full (%d cells, %d sequences): running what fits now, %d "
                "job(s) wait for cells to free up (raise n_ctx or n_seq_max to run them at once)",
                self.pool.capacity,
                self.e.n_seq_max,
                sum(1 for s in self.states if not s.admitted),
            )

    def _admit_one(self, st: State) -> Admission:
        job = st.job
        if not st.started:
            return self._start(st, _tokens(job))
        limit = st.gen.max_tokens
        if not self.pool.make_room(limit, 1):
            if self._in_flight():
                return "full"
            limit = self.pool.headroom()
            if limit < 1 or self.pool.n_free < 1:
                raise ProviderError("llama.cpp context has no room left for a continuation")
        self._add_child(st, limit, late=st.prefill is None)
        return "admitted"

    def _check(self, job: Job, tokens: list[int]) -> None:
        """Refuse, before any compute, a job that no state of the context could ever run."""
        least = len(tokens) + (1 if isinstance(job, GenJob) else 0)
        if not tokens:
            raise ProviderError("the prompt is empty (0 tokens)")
        if least > self.pool.capacity:
            raise ProviderError(
                f"the prompt ({len(tokens)} tokens) does not fit the llama.cpp context "
                f"(n_ctx = {self.pool.capacity} tokens"
                + (", and one more for the first sampled token" if isinstance(job, GenJob) else "")
                + "): raise n_ctx or shorten the prompt"
            )
        if isinstance(job, EvalJob) and any(not 0 <= p < len(tokens) for p in job.read_at):
            raise ProviderError(
                f"read positions {job.read_at} are outside the {len(tokens)}-token prompt"
            )

    def _start(self, st: State, tokens: list[int]) -> Admission:
        """Start evaluating a prompt after its longest cached prefix (and admit one child)."""
        job = st.job
        self._check(job, tokens)
        arr = np.asarray(tokens, np.int32)
        entry, lcp = self.pool.longest_prefix(arr)
        if self._shares_in_flight(st, arr, lcp):
            return "defer"
        reads = set(job.read_at) if isinstance(job, EvalJob) else {len(tokens) - 1}
        lcp = min(lcp, *reads)  # at least one token to evaluate: its logits are needed
        limit = job.max_tokens if isinstance(job, GenJob) else 0
        seqs = 2 if isinstance(job, GenJob) else 1
        new = len(tokens) - lcp
        if not self.pool.make_room(new + limit, seqs, keep=entry):
            if self._in_flight():
                return "full"
            if not self.pool.make_room(new + 1 if limit else new, seqs, keep=entry):
                if self.pool.make_room(len(tokens) + (1 if limit else 0), seqs):
                    entry, lcp, new = None, 0, len(tokens)  # the cached prefix was in the way
                else:
                    raise ProviderError(
                        f"the prompt ({len(tokens)} tokens) does not fit the llama.cpp context "
                        f"(n_ctx = {self.pool.capacity} tokens) next to what it holds"
                    )
            limit = min(limit, self.pool.headroom() - new)
        st.started = True
        seq = self.pool.acquire()
        if entry is not None:
            self.pool.fork(entry.seq, seq, lcp)
        st.prefill = Prefill(seq, tokens[lcp:], lcp, reads)
        self.pool.reserved += new
        job.prompt_evaluated += new
        if isinstance(job, GenJob):
            st.parent = seq
            self._add_child(st, limit, late=False)
        return "admitted"

    def _shares_in_flight(self, st: State, tokens: np.ndarray, cached: int) -> bool:
        """Whether a prompt being evaluated now shares :data:`SHARE_MIN` or more leading tokens
        with ``tokens`` beyond the ``cached`` ones: then this job waits until that prompt is
        evaluated and cached, and forks from it instead of evaluating the shared part again
        (the prompts of one request's siblings, the judge prompts of one depth)."""
        if not self.pool.keep_prefixes:
            return False
        for other in self.states:
            if other is not st and other.prefill is not None:
                theirs = np.asarray(_tokens(other.job), np.int32)
                if common_prefix(theirs, tokens) >= cached + SHARE_MIN:
                    return True
        return False

    def _add_child(self, st: State, limit: int, *, late: bool) -> None:
        child = Child(st.gen, st.next_child, self.pool.acquire(), limit)
        st.next_child += 1
        self.pool.reserved += limit
        if late:  # re-evaluates the prompt's last token: the parent's logits are gone
            st.gen.prompt_evaluated += 1
        st.waiting.append(child)

    def _fork_late(self) -> None:
        """Fork children admitted after their parent's prompt was evaluated."""
        for st in self.states:
            if st.prefill is None and st.waiting and st.parent is not None:
                for child in st.waiting:
                    self.pool.fork(st.parent, child.seq, len(st.gen.prompt) - 1)
                    st.live.append(child)
                st.waiting.clear()
                self._release_parent(st)

    def _release_parent(self, st: State) -> None:
        if st.parent is not None and st.admitted and not st.waiting:
            self.pool.finish(st.parent, st.gen.prompt)
            st.parent = None

    # -- one batch --------------------------------------------------------------------------

    def _fill(self) -> tuple[int, int]:
        """Put one token per live continuation, then prompt chunks, into the batch; return the
        rows in all and the live continuations' rows."""
        e, n = self.e, 0
        for st in self.states:
            for child in st.live:
                e.put(n, child.token, child.pos, child.seq, True)
                child.row = n
                n += 1
        sampled = n
        for st in self.states:
            pf = st.prefill
            if pf is None:
                continue
            pf.chunk = min(len(pf.tokens) - pf.done, e.n_batch - n)
            pf.rows.clear()
            for j in range(pf.done, pf.done + pf.chunk):
                pos = pf.start + j
                read = pos in pf.reads
                e.put(n, pf.tokens[j], pos, pf.seq, read)
                if read:
                    pf.rows[pos] = n
                n += 1
        return n, sampled

    def _pad(self, n: int, sampled: int) -> int | None:
        """Pad a batch of an odd number (3 or more) of sampled rows and nothing else with one
        row (see :attr:`~providers.llamacpp._engine.Engine.even_outputs`): row ``n``, one token
        of a sequence of its own; return that sequence (the caller drops it after the decode),
        or ``None``. Batches with prompt rows are left as they are (no gain measured there)."""
        if n != sampled or n < 3 or n % 2 == 0:
            return None
        if n >= self.e.n_batch or self.pool.n_free < 1 or self.pool.headroom() < 1:
            return None
        seq = self.pool.acquire()
        self.e.put(n, self.e.model.bos, 0, seq, True)
        return seq

    def _decode(self, n: int, sampled: int, padded: int) -> None:
        status = self.e.decode(n, sampled, padded)
        if status == 1:  # no KV slot: free every cached prefix and try once more
            logger.info("llama.cpp found no KV slot for %d tokens; dropping cached prefixes", n)
            self.pool.clear()
            status = self.e.decode(n, sampled, padded)
        if status != 0:
            raise ProviderError(
                f"llama_decode failed with status {status} on a batch of {n} tokens "
                f"({self.pool.ledger.used()} of {self.pool.capacity} cells in use)"
            )

    def _draw_live(self) -> None:
        """Sample every exactly-sampled live child at once (their rows lead the batch, so
        output row ``i`` is batch row ``i``)."""
        live = [c for st in self.states for c in st.live if c.row >= 0]
        exact = [c for c in live if c.rng is not None]
        if not exact:
            return
        view = self.e.logits_rows(len(live))
        rows = [c.row for c in exact]
        logits = view if len(exact) == len(live) else view[rows]
        temps = np.array([c.temperature for c in exact], np.float32)
        draws = np.array([c.rng.random() for c in exact if c.rng is not None])
        for child, token in zip(exact, draw_rows(logits, temps, draws), strict=True):
            child.drawn = token

    def _sample(self, child: Child, row: int) -> int:
        """The token ``child`` samples from batch row ``row``."""
        if child.drawn is not None:
            token, child.drawn = child.drawn, None
            return token
        if child.rng is not None:
            logits = self.e.logits_at(row)[None, :]
            temps = np.array([child.temperature], np.float32)
            return draw_rows(logits, temps, np.array([child.rng.random()]))[0]
        return self.e.sample(child.sampler, row)

    def _collect(self, st: State) -> None:
        """Read this job's rows of the last decode: prompt logits, then sampled tokens."""
        if st.prefill is not None and st.prefill.chunk:
            self._collect_prefill(st, st.prefill)
        for child in list(st.live):
            if child.row >= 0:
                self.pool.evaluated(child.seq, 1)
                child.cells += 1
                self._accept(st, child, self._sample(child, child.row))

    def _collect_prefill(self, st: State, pf: Prefill) -> None:
        self.pool.evaluated(pf.seq, pf.chunk)
        pf.done += pf.chunk
        pf.chunk = 0
        job = st.job
        if isinstance(job, EvalJob):
            for pos, row in pf.rows.items():
                pf.logits[pos] = self.e.logits_row(row, job.labels)
        if pf.done < len(pf.tokens):
            return
        st.prefill = None
        if isinstance(job, EvalJob):
            job.rows = [pf.logits[pos] for pos in job.read_at]
            self.pool.finish(pf.seq, job.tokens)
            job.done = True
            return
        # Children waiting now fork the whole prompt and sample from the parent's logits.
        row = pf.rows[pf.end - 1]
        waiting, st.waiting = st.waiting, []
        for child in waiting:
            self.pool.fork(pf.seq, child.seq, pf.end)
            child.pos = pf.end - 1  # _accept moves it to the next position
            st.live.append(child)
            self._accept(st, child, self._sample(child, row))
        self._release_parent(st)

    def _accept(self, st: State, child: Child, token: int) -> None:
        """Take a sampled token: finish the child, or queue the token for the next batch."""
        child.generated.append(token)
        child.row = -1
        model = self.e.model
        if model.is_eog(token):
            self._finish(st, child, "eos", bytes(child.scanner.data))
            return
        end = child.scanner.feed(model.piece(token))
        if end is not None:
            self._finish(st, child, "step", bytes(child.scanner.data[:end]))
        elif len(child.generated) >= st.gen.max_tokens or child.cells >= child.limit:
            self._finish(st, child, "length", bytes(child.scanner.data))
        else:
            child.token = token
            child.pos += 1

    def _finish(self, st: State, child: Child, reason: Finish, data: bytes) -> None:
        job = st.gen
        child.free()
        self.pool.reserved -= child.limit - child.cells
        st.live.remove(child)
        self.pool.finish(child.seq, job.prompt + child.generated[:-1])
        job.outputs[child.index] = GenOutput(decode_text(data), reason, tuple(child.generated))
        st.n_done += 1
        if st.n_done == job.n:
            job.done = True

    def _release(self, st: State) -> None:
        """Give back everything a cancelled or failed job holds."""
        for child in st.live + st.waiting:
            child.free()
            self.pool.reserved -= child.limit - child.cells
            self.pool.drop(child.seq)
        st.live.clear()
        st.waiting.clear()
        if st.prefill is not None:
            self.pool.reserved -= len(st.prefill.tokens) - st.prefill.done
            self.pool.drop(st.prefill.seq)
            if st.parent == st.prefill.seq:
                st.parent = None
            st.prefill = None
        if st.parent is not None:
            self.pool.drop(st.parent)
            st.parent = None
