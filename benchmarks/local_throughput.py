"""Local llama.cpp throughput: the batched provider against sequential ``create_completion``.

On the bundled Gemma 3 270M GGUF (or ``--model``), in one run, with the machine otherwise idle:

1. **Decode throughput.** The same work, ``--sequences`` continuations of ``--tokens`` tokens
   each from one prompt (temperature 1, whole vocabulary unless ``--top-k``, no stop strings),
   done
   (a) by sequential ``llama_cpp.Llama.create_completion`` calls, the baseline, and
   (b) by :class:`~providers.llamacpp.LlamaCppProvider` at widths 1, 4, 8 and 16 (``n`` =
   width per request, requests one after another). Prints tokens/s and the ratio to (a).
2. **Prefix reuse.** A REBASE-shaped tree (depth 0: 1 node x 16 children; depth 1: 4 nodes x 4;
   depth 2: 8 nodes x 2; each depth's requests sent together) through a fresh provider. Prints
   the prompt tokens the provider evaluated against the unique prompt tokens of the tree (the
   nodes of a trie of all prompts); 1.0 means no prompt token was ever evaluated twice, and below
   1.0 means the KV of generated steps was reused as the children's prompts.

Usage::

    python benchmarks/local_throughput.py                  # 16 x 32 tokens
    python benchmarks/local_throughput.py --tokens 64 --threads 2 --widths 1,4,8,16,32

``--repack auto|on|off`` chooses llama.cpp's CPU weight path (see
:mod:`providers.llamacpp.repack`); ``benchmarks/cpu_paths.py`` compares the paths and builds.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import anyio

from providers.llamacpp import LlamaCppProvider, LlamaModel, default_model_path
from providers.llamacpp.repack import load_llama
from rebase_agent import StepCompletion, StepRequest

PROBLEM = "A farmer has 17 sheep. All but 9 run away. How many sheep does the farmer have left?"
STEPS = ("The farmer starts with 17 sheep.\n\n", "All but 9 run away, so 9 sheep stay.\n\n")


def sequential(path: str, prompt: str, args: argparse.Namespace) -> tuple[int, float]:
    """(a): ``create_completion`` one sequence at a time; returns (tokens, seconds)."""
    llm = load_llama(path, repack=args.repack, n_ctx=2048, n_threads=args.threads, verbose=False)
    kw: dict[str, Any] = dict(
        max_tokens=args.tokens,
        temperature=1.0,
        top_p=1.0,
        top_k=args.top_k,
        min_p=0.0,
        repeat_penalty=1.0,
        stop=[],
    )
    llm.create_completion(prompt, seed=999, **kw)  # warm-up, and the prompt is cached
    tokens, start = 0, time.perf_counter()
    for i in range(args.sequences):
        tokens += llm.create_completion(prompt, seed=i, **kw)["usage"]["completion_tokens"]
    seconds = time.perf_counter() - start
    llm.close()
    return tokens, seconds


async def batched(
    provider: LlamaCppProvider, width: int, args: argparse.Namespace
) -> tuple[int, float]:
    """(b): the provider, ``width`` sequences per request; returns (tokens, seconds)."""
    tokens, start = 0, time.perf_counter()
    for r in range(args.sequences // width):
        out = await provider.generate(
            StepRequest(
                problem=PROBLEM,
                steps=STEPS,
                n=width,
                max_tokens=args.tokens,
                stop=(),
                temperature=1.0,
                seed=r * width,
            )
        )
        tokens += sum(c.completion_tokens for c in out)
    return tokens, time.perf_counter() - start


async def tree(provider: LlamaCppProvider, args: argparse.Namespace) -> tuple[int, int, int, float]:
    """A 3-depth tree; returns (prompt tokens evaluated, unique prompt tokens, sum of prompt
    lengths, seconds)."""
    trie: dict[int, Any] = {}
    unique = evaluated = total = 0
    start = time.perf_counter()
    frontier: list[tuple[str, ...]] = [()]
    for keep, width in ((1, 16), (4, 4), (8, 2)):
        nodes = frontier[:keep]
        results: list[list[StepCompletion]] = [[] for _ in nodes]

        async def expand(
            i: int,
            steps: tuple[str, ...],
            width: int = width,
            results: list[list[StepCompletion]] = results,
        ) -> None:
            results[i] = await provider.generate(
                StepRequest(problem=PROBLEM, steps=steps, n=width, max_tokens=args.tokens, seed=i)
            )

        async with anyio.create_task_group() as tg:
            for i, steps in enumerate(nodes):
                tg.start_soon(expand, i, steps)
        frontier = []
        for steps, out in zip(nodes, results, strict=True):
            node = trie
            prompt = provider.tokenize_prompt(PROBLEM, "".join(steps))
            total += len(prompt)
            for token in prompt:
                if token not in node:
                    node[token] = {}
                    unique += 1
                node = node[token]
            evaluated += sum(c.prompt_tokens for c in out)
            frontier += [(*steps, c.text) for c in out if c.text]
    return evaluated, unique, total, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF path (default: the bundled Gemma 3 270M)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per continuation")
    parser.add_argument("--sequences", type=int, default=16, help="continuations per mode")
    parser.add_argument("--widths", default="1,4,8,16")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--top-k", type=int, default=0, help="0: the whole vocabulary")
    parser.add_argument(
        "--repack", choices=["auto", "on", "off"], default=None, help="CPU weight path"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    path = args.model or default_model_path()
    widths = [int(w) for w in args.widths.split(",")]
    model = LlamaModel(path, repack=args.repack)  # loaded once, shared by both providers below
    provider = LlamaCppProvider(
        model, n_ctx=8192, n_seq_max=max(widths) + 2, n_threads=args.threads, top_k=args.top_k
    )
    prompt = provider.template.render(PROBLEM, "".join(STEPS))

    print(
        f"model {path}\n{args.sequences} continuations x {args.tokens} tokens, temperature 1, "
        f"top-k {args.top_k or 'off'}"
    )
    print(f"{'mode':<34} {'tokens':>7} {'seconds':>8} {'tok/s':>8} {'vs (a)':>7}")
    tokens, seconds = sequential(path, prompt, args)
    base = tokens / seconds
    print(
        f"{'(a) sequential create_completion':<34} {tokens:7d} {seconds:8.2f} {base:8.1f} "
        f"{1.0:7.2f}"
    )
    anyio.run(batched, provider, 1, argparse.Namespace(sequences=1, tokens=4))  # warm-up
    for width in widths:
        tokens, seconds = anyio.run(batched, provider, width, args)
        rate = tokens / seconds
        print(
            f"{f'(b) LlamaCppProvider width {width}':<34} {tokens:7d} {seconds:8.2f} "
            f"{rate:8.1f} {rate / base:7.2f}"
        )
    provider.close()

    fresh = LlamaCppProvider(model, n_ctx=8192, n_seq_max=34, n_threads=args.threads)
    evaluated, unique, total, seconds = anyio.run(tree, fresh, args)
    print(
        f"\ntree 1x16 -> 4x4 -> 8x2, {seconds:.1f} s:\n"
        f"  prompt tokens evaluated    {evaluated:6d}\n"
        f"  unique prompt tokens       {unique:6d}  (evaluated / unique = {evaluated / unique:.2f};"
        " below 1: generated steps are not evaluated again as prompt)\n"
        f"  sum of the prompt lengths  {total:6d}  (what a provider without reuse evaluates)"
    )
    fresh.close()
    model.close()


if __name__ == "__main__":
    main()
