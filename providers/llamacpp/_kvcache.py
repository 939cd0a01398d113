"""The sequences of one llama.cpp context: ids, cached prefixes, cells and reservations.

Every sequence id is either free, busy (a prompt being evaluated or a continuation being
sampled), or a *cached prefix*: a finished sequence whose KV cells are kept so that a later
prompt that starts with the same tokens forks from it (``llama_memory_seq_cp``) instead of
evaluating them again. Cached prefixes are evicted least-recently-used first, when a new
sequence needs their id or their cells.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from providers.llamacpp._cells import CellLedger
from providers.llamacpp._lib import llama_cpp

__all__ = ("CachedPrefix", "SeqPool", "common_prefix")


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two token arrays."""
    m = min(len(a), len(b))
    if m == 0:
        return 0
    diff = np.flatnonzero(a[:m] != b[:m])
    return int(diff[0]) if len(diff) else m


class CachedPrefix:
    """A finished sequence kept in the KV cache, holding exactly ``tokens``."""

    __slots__ = ("pins", "seq", "tick", "tokens")

    def __init__(self, seq: int, tokens: np.ndarray, tick: int) -> None:
        self.seq = seq
        self.tokens = tokens
        self.tick = tick
        self.pins = 0
        """Children still to fork from this prefix; a pinned prefix is never evicted."""


class SeqPool:
    """Sequence ids, cached prefixes and the cell budget of one unified-KV context.

    Args:
        ctx: The llama.cpp context.
        n_seq_max: Sequence ids the context was created with.
        capacity: KV cells of the context (``llama_n_ctx``).
        keep_prefixes: Keep finished sequences as cached prefixes (else free them at once).
        max_cached_cells: Most cells held only by cached prefixes. With a unified KV cache every
            sequence's attention spans all occupied cells, so a large cache slows each decode.
    """

    def __init__(
        self, ctx: Any, n_seq_max: int, capacity: int, keep_prefixes: bool, max_cached_cells: int
    ) -> None:
        self.mem = llama_cpp.llama_get_memory(ctx)
        self.capacity = capacity
        self.keep_prefixes = keep_prefixes
        self.max_cached_cells = max_cached_cells
        self.ledger = CellLedger()
        self.reserved = 0
        """Cells promised to admitted work and not evaluated yet."""
        self.entries: dict[int, CachedPrefix] = {}
        self._free = list(range(n_seq_max - 1, -1, -1))
        self._ticks = itertools.count()

    # -- ids and cells ------------------------------------------------------------------------

    @property
    def n_free(self) -> int:
        """Sequence ids neither busy nor cached."""
        return len(self._free)

    def headroom(self) -> int:
        """Cells neither occupied nor reserved."""
        return self.capacity - self.ledger.used() - self.reserved

    def acquire(self) -> int:
        """Take a free sequence id (call :meth:`make_room` first)."""
        return self._free.pop()

    def drop(self, seq: int) -> None:
        """Free ``seq``'s cells (``llama_memory_seq_rm``) and its id."""
        llama_cpp.llama_memory_seq_rm(self.mem, seq, -1, -1)
        self.ledger.remove(seq)
        self.entries.pop(seq, None)
        self._free.append(seq)

    def finish(self, seq: int, tokens: list[int]) -> None:
        """A sequence holding exactly ``tokens`` is done: cache it or free it."""
        if self.keep_prefixes and tokens:
            arr = np.asarray(tokens, dtype=np.int32)
            entry = CachedPrefix(seq, arr, next(self._ticks))
            self.entries[seq] = entry
            self._trim(entry)
        else:
            self.drop(seq)

    def _trim(self, newest: CachedPrefix) -> None:
        """Evict least recently used prefixes while they alone hold too many cells."""
        for entry in sorted(self.entries.values(), key=lambda e: e.tick):
            cached_only = self.ledger.used() - self.ledger.used_without(set(self.entries))
            if cached_only <= self.max_cached_cells:
                return
            if entry is not newest and entry.pins == 0:
                self.drop(entry.seq)

    def fork(self, src: int, dst: int, upto: int) -> None:
        """Let ``dst`` see ``src``'s cells at positions below ``upto`` (no copy, unified KV)."""
        if upto > 0:
            llama_cpp.llama_memory_seq_cp(self.mem, src, dst, 0, upto)
            self.ledger.copy(src, dst, upto)

    def evaluated(self, seq: int, n: int) -> None:
        """Record ``n`` tokens evaluated for ``seq``, turning reservation into cells."""
        self.ledger.append(seq, n)
        self.reserved -= n

    # -- prefix cache ---------------------------------------------------------------------------

    def longest_prefix(self, tokens: np.ndarray) -> tuple[CachedPrefix | None, int]:
        """The cached prefix sharing the most leading tokens with ``tokens``, and how many."""
        best: CachedPrefix | None = None
        best_len = 0
        for entry in self.entries.values():
            n = common_prefix(entry.tokens, tokens)
            if n > best_len:
                best, best_len = entry, n
        if best is not None:
            best.tick = next(self._ticks)
        return best, best_len

    def make_room(self, cells: int, seqs: int, keep: CachedPrefix | None = None) -> bool:
        """Evict cached prefixes (least recently used first, never ``keep`` or a pinned one)
        until ``cells`` more cells and ``seqs`` more ids are available; True if they are."""

        def fits() -> bool:
            return self.headroom() >= cells and self.n_free >= seqs

        if fits():
            return True
        victims = sorted(
            (e for e in self.entries.values() if e.pins == 0 and e is not keep),
            key=lambda e: e.tick,
        )
        for entry in victims:
            self.drop(entry.seq)
            if fits():
                return True
        return False

    def clear(self) -> None:
        """Evict every cached prefix that no work is forking from."""
        for entry in [e for e in self.entries.values() if e.pins == 0]:
            self.drop(entry.seq)
