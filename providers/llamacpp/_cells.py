"""Exact bookkeeping of the cells a unified llama.cpp KV cache holds.

With ``kv_unified=True`` a cell is one evaluated token, tagged with every sequence that sees it.
``llama_memory_seq_cp(src, dst, 0, p)`` adds the tag ``dst`` to ``src``'s cells below ``p`` (no
copy), and ``llama_memory_seq_rm(seq, -1, -1)`` drops the tag; a cell without tags is free. The
ledger mirrors exactly those three operations, so :meth:`CellLedger.used` is the number of
occupied cells without asking llama.cpp (whose API has no such query).
"""

from __future__ import annotations

__all__ = ("CellLedger",)


class _Segment:
    """Cells evaluated by one sequence in one run, at consecutive positions."""

    __slots__ = ("length", "owner")

    def __init__(self, owner: int) -> None:
        self.owner = owner
        self.length = 0


class CellLedger:
    """Which cells each sequence sees, as a chain of ``[segment, cells seen]`` entries."""

    def __init__(self) -> None:
        self._chains: dict[int, list[tuple[_Segment, int]]] = {}

    def length(self, seq: int) -> int:
        """Number of positions (tokens) ``seq`` holds."""
        return sum(count for _, count in self._chains.get(seq, ()))

    def append(self, seq: int, n: int = 1) -> None:
        """Record ``n`` tokens evaluated for ``seq`` after its current end."""
        chain = self._chains.setdefault(seq, [])
        if chain:
            seg, count = chain[-1]
            if seg.owner == seq and count == seg.length:
                seg.length += n
                chain[-1] = (seg, count + n)
                return
        seg = _Segment(seq)
        seg.length = n
        chain.append((seg, n))

    def copy(self, src: int, dst: int, upto: int) -> None:
        """Record ``llama_memory_seq_cp(src, dst, 0, upto)`` into an empty ``dst``."""
        if self._chains.get(dst):
            raise ValueError(f"sequence {dst} is not empty")
        out: list[tuple[_Segment, int]] = []
        left = upto
        for seg, count in self._chains.get(src, ()):
            if left <= 0:
                break
            take = min(count, left)
            out.append((seg, take))
            left -= take
        self._chains[dst] = out

    def remove(self, seq: int) -> None:
        """Record ``llama_memory_seq_rm(seq, -1, -1)``."""
        self._chains.pop(seq, None)

    def used(self) -> int:
        """Cells seen by at least one sequence."""
        return self.used_without(set())

    def used_without(self, seqs: set[int]) -> int:
        """Cells that would stay occupied after removing ``seqs``."""
        seen: dict[int, int] = {}
        for seq, chain in self._chains.items():
            if seq in seqs:
                continue
            for seg, count in chain:
                key = id(seg)
                if count > seen.get(key, 0):
                    seen[key] = count
        return sum(seen.values())
