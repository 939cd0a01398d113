"""Exact temperature sampling over the whole vocabulary, for every row of a batch at once.

REBASE samples each step from ``softmax(logits / T)`` over the whole vocabulary (no top-k, no
top-p). llama.cpp's sampler chain does that one row at a time, copying the vocabulary into a
candidate array and building a discrete distribution per call (about 4 ms a row for Gemma 3's
262k tokens on a laptop core); here the rows of one decode are sampled together with numpy:
``exp((x - max) / T)`` for all rows, sums per block of :data:`BLOCK` tokens, then one uniform
draw per row located by inverse CDF over the block sums and inside one block. The distribution
is the same (up to float rounding); the random stream is each sequence's own
``numpy.random.Generator`` (PCG64 seeded ``seed + index``), so a seeded sequence draws the
same tokens however it is batched.
"""

from __future__ import annotations

import numpy as np

__all__ = ("BLOCK", "draw_rows", "new_rng")

BLOCK = 512
"""Tokens per block of the two-level inverse CDF."""


def new_rng(seed: int | None, index: int) -> np.random.Generator:
    """The generator of continuation ``index`` (``seed + index``; ``None``: fresh entropy)."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(np.random.PCG64((seed + index) & 0xFFFFFFFFFFFFFFFF))


def draw_rows(logits: np.ndarray, temperatures: np.ndarray, uniforms: np.ndarray) -> list[int]:
    """Sample one token per row of ``logits`` (rows x vocabulary, float32).

    Args:
        logits: The raw logits, one row per sequence (not modified).
        temperatures: One temperature per row, each > 0.
        uniforms: One draw in [0, 1) per row.
    """
    n, vocab = logits.shape
    work = logits - logits.max(axis=1, keepdims=True)
    work *= (1.0 / temperatures).astype(np.float32)[:, None]
    np.exp(work, out=work)
    full = vocab // BLOCK * BLOCK
    sums = np.empty((n, -(-vocab // BLOCK)), np.float64)
    sums[:, : full // BLOCK] = work[:, :full].reshape(n, -1, BLOCK).sum(axis=2, dtype=np.float64)
    if full < vocab:
        sums[:, -1] = work[:, full:].sum(axis=1, dtype=np.float64)
    cdf = np.cumsum(sums, axis=1)
    out: list[int] = []
    for r in range(n):
        target = uniforms[r] * cdf[r, -1]
        b = min(int(np.searchsorted(cdf[r], target, side="right")), cdf.shape[1] - 1)
        rest = target - (cdf[r, b - 1] if b else 0.0)
        inner = np.cumsum(work[r, b * BLOCK : min((b + 1) * BLOCK, vocab)], dtype=np.float64)
        i = min(int(np.searchsorted(inner, rest, side="right")), len(inner) - 1)
        while i > 0 and work[r, b * BLOCK + i] == 0.0:  # never a token of probability 0
            i -= 1
        out.append(b * BLOCK + i)
    return out
