"""One decode loop over a batch of jobs (see :mod:`providers.llamacpp._engine`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from providers.llamacpp._jobs import EvalJob, Finish, GenJob, GenOutput, Job, decode_text
from providers.llamacpp._state import Child, Prefill, State
from rebase_agent.exceptions import ProviderError

if TYPE_CHECKING:
    from providers.llamacpp._engine import Engine

__all__ = ("Run",)

logger = logging.getLogger("providers.llamacpp")


class Run:
    """Runs a list of jobs to completion on one engine; see :meth:`loop`."""

    def __init__(self, engine: Engine, jobs: Sequence[Job]) -> None:
        self.e = engine
        self.pool = engine.pool
        self.states = [State(job) for job in jobs]
        self.warned = False

    def loop(self) -> None:
        """Admit what fits, decode one batch, sample, repeat; every job ends done."""
        try:
            while True:
                for st in self.states:
                    if st.job.cancelled and not st.job.done:
                        self._release(st)
                        st.job.done = True
                self.states = [st for st in self.states if not st.job.done]
                if not self.states:
                    return
                self._admit()
                self._fork_late()
                n = self._fill()
                if n == 0:
                    raise ProviderError("llama.cpp engine stalled with nothing to decode")
                self._decode(n)
                for st in self.states:
                    if st.prefill is not None and st.prefill.chunk:
                        self._collect_prefill(st, st.prefill)
                    for child in list(st.live):
                        if child.row >= 0:
                            self.pool.evaluated(child.seq, 1)
                            child.cells += 1
                            self._accept(st, child, self.e.sample(child.sampler, child.row))
        except Exception as exc:
            for st in self.states:
                if not st.job.done:
                    self._release(st)
                    st.job.error, st.job.done = exc, True

    def _in_flight(self) -> bool:
        return any(st.prefill or st.live or st.waiting for st in self.states)

    # -- admission: only what fits the context's cells and sequence ids ---------------------------

    def _admit(self) -> None:
        for st in self.states:
            while not st.admitted:
                if not self._admit_one(st):
                    if not self.warned and self._in_flight():
                        self.warned = True
                        logger.info(
                            "llama.cpp context full (%d cells, %d sequences): running what fits "
                            "now, %d job(s) wait for cells to free up (raise n_ctx or n_seq_max "
                            "to run them at once)",
                            self.pool.capacity,
                            self.e.n_seq_max,
                            sum(1 for s in self.states if not s.admitted),
                        )
                    return

    def _admit_one(self, st: State) -> bool:
        job = st.job
        if not st.started:
            tokens = job.prompt if isinstance(job, GenJob) else job.tokens
            return self._start(st, tokens)
        limit = st.gen.max_tokens
        if not self.pool.make_room(limit, 1):
            if self._in_flight():
                return False
            limit = self.pool.headroom()
            if limit < 1 or self.pool.n_free < 1:
                raise ProviderError("llama.cpp context has no room left for a continuation")
        self._add_child(st, limit, late=st.prefill is None)
        return True

    def _start(self, st: State, tokens: list[int]) -> bool:
        """Start evaluating a prompt after its longest cached prefix (and admit one child)."""
        job = st.job
        entry, lcp = self.pool.longest_prefix(np.asarray(tokens, np.int32))
        reads = set(job.read_at) if isinstance(job, EvalJob) else {len(tokens) - 1}
        lcp = min(lcp, *reads)  # at least one token to evaluate: its logits are needed
        limit = job.max_tokens if isinstance(job, GenJob) else 0
        seqs = 2 if isinstance(job, GenJob) else 1
        new = len(tokens) - lcp
        if not self.pool.make_room(new + limit, seqs, keep=entry):
            if self._in_flight():
                return False
            if not self.pool.make_room(new + 1 if limit else new, seqs, keep=entry):
                raise ProviderError(
                    f"the prompt ({len(tokens)} tokens) does not fit the llama.cpp context "
                    f"({self.pool.capacity} tokens): raise n_ctx"
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
        return True

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

    def _fill(self) -> int:
        e, n = self.e, 0
        for st in self.states:
            for child in st.live:
                e.put(n, child.token, child.pos, child.seq, True)
                child.row = n
                n += 1
        for st in self.states:
            pf = st.prefill
            if pf is None or n >= e.n_batch:
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
        return n

    def _decode(self, n: int) -> None:
        status = self.e.decode(n)
        if status == 1:  # no KV slot: free every cached prefix and try once more
            logger.info("llama.cpp found no KV slot for %d tokens; dropping cached prefixes", n)
            self.pool.clear()
            status = self.e.decode(n)
        if status != 0:
            raise ProviderError(
                f"llama_decode failed with status {status} on a batch of {n} tokens "
                f"({self.pool.ledger.used()} of {self.pool.capacity} cells in use)"
            )

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
            self._accept(st, child, self.e.sample(child.sampler, row))
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
