"""Local llama.cpp throughput: the batched provider against the other ways to run the same work.

On the bundled Gemma 3 270M GGUF (or ``--model``), in ONE run, with the machine otherwise idle
(run it through ``/work/runs/quiet.sh`` on a shared machine), every workload is done by every
contender:

* ``sequential``: ``llama_cpp.Llama.create_completion``, one sequence at a time (tree only);
* ``provider``: :class:`~providers.llamacpp.LlamaCppProvider`, exact sampling (the whole
  vocabulary, as REBASE defines it), and ``provider top-k K`` (``--top-k``, a documented
  option of the provider, off by default: sampling among the K likeliest tokens only), and
  ``provider odd rows``: exact sampling with the engine's ``even_outputs`` off (a decode's
  logits rows as they come, odd counts included; see :class:`~providers.llamacpp._engine.Engine`),
  and ``provider ubatch 512``: llama.cpp computing up to 512 rows at once (``n_ubatch=512``)
  instead of the CPU default, :data:`~providers.llamacpp._engine.CPU_UBATCH`;
* ``llama-server``: the project's own :class:`~providers.openai_compat.OpenAIProvider`
  (``server="llama_server"``, ``n`` per parent) pointed at llama.cpp's ``llama-server -np 16
  -kvu``, started here from ``--llama-server PATH`` (sent ``top_k=0, min_p=0``: the same exact
  sampling; ``n`` per parent on the tree, ``n`` requests on the eval, where ``n`` per parent
  stalls llama-server's slot scheduler next to the judge's requests);
* the ceiling: ``llama-batched-bench`` at batch sizes 1 to 32 (``--batched-bench PATH``),
  decoding that many sequences after a shared prompt.

Workloads:

1. ``tree``: a REBASE-shaped tree, depth 0: 1 node x 16 children, depth 1: 4 nodes x 4, depth 2:
   8 nodes x 2, each depth's requests sent together, steps of at most ``--step-tokens`` (48)
   tokens ending at a newline, temperature 1.
2. ``eval``: REBASE (:func:`rebase_agent.solve`) on ``--problems`` (16) arithmetic chains
   (:func:`rebase_agent.evaluation.arithmetic.generate_chains`, the few-shot prompt of
   ``benchmarks/arithmetic_chains.py``), ``--concurrency`` (8) searches in flight, budget
   ``--budget``, the LLM judge on the same model: the provider's
   :class:`~providers.llamacpp.LlamaCppScorer` sharing its context
   (:data:`rebase_agent.prm.JUDGE_PROMPT`), or the server's
   :class:`~providers.openai_compat.JudgeScorer` (chat logprobs: llama-server returns
   completions logprobs in a layout the completions judge does not read), whose prompt is the
   same question in llama-server's default chat template (the unique-token count uses the
   local judge's prompts for it too).
3. ``decode`` (only when named in ``--workloads``): ``--sequences`` continuations of
   ``--step-tokens`` tokens from one prompt, no stop, through the provider at widths 1, 4, 8, 16.

For each: generated tokens per second (policy tokens over wall time), that as a fraction of
batched-bench at batch 16; for the local provider, the batch generation ran at (its mean sampled
rows per ``llama_decode``), the share of the wall time spent in ``llama_decode``, and the tokens
per second as a fraction of batched-bench at that batch size (interpolated between the sizes 1
to 32 it ran, linearly in log size), and batched-bench's own time for the same work (the sampled
tokens at its decode speed at that batch, the prompt tokens evaluated, policy's and judge's, at
its prompt speed) over the wall time, and the same priced decode by decode (each decode's
sampled rows at batched-bench's speed at that many sequences, its prompt rows at its prompt
speed: the batch varies as a depth fills and drains); and prompt tokens evaluated over unique
prompt tokens (the
nodes of a trie of every prompt sent, policy and judge; below 1 means generated steps were not
evaluated again as prompts; llama-server's count is its ``prompt_tokens_total`` metric).

Usage::

    python benchmarks/local_throughput.py --threads 2 \\
        --llama-server /work/tools/llama/0.3.36/bin/llama-server \\
        --batched-bench /work/tools/llama/0.3.36/bin/llama-batched-bench
    python benchmarks/local_throughput.py --workloads tree --skip sequential   # quicker

``--repack auto|on|off`` chooses llama.cpp's CPU weight path (see
:mod:`providers.llamacpp.repack`); ``benchmarks/cpu_paths.py`` compares the paths and builds.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from providers.llamacpp import LlamaCppProvider, LlamaCppScorer, LlamaModel, default_model_path
from providers.llamacpp._engine import DecodeShape
from providers.llamacpp.repack import load_llama
from rebase_agent import RebaseConfig, ScoreRequest, StepCompletion, StepRequest, solve
from rebase_agent.backends import prepare
from rebase_agent.evaluation.arithmetic import FEW_SHOT_TEMPLATE, generate_chains

PROBLEM = "A farmer has 17 sheep. All but 9 run away. How many sheep does the farmer have left?"
STEPS = ("The farmer starts with 17 sheep.\n", "All but 9 run away, so 9 sheep stay.\n")
TREE = ((1, 16), (4, 4), (8, 2))
"""(nodes expanded, children each) per depth."""


@dataclass
class Row:
    """One contender on one workload."""

    workload: str
    contender: str
    tokens: int
    """Completion tokens generated."""
    seconds: float
    evaluated: int | None
    """Prompt tokens evaluated (policy and judge)."""
    unique: int
    """Distinct prompt tokens sent (policy and judge)."""
    note: str = ""
    batch: float | None = None
    """The local engine's mean sampled rows per ``llama_decode`` (generation's batch size)."""
    cells: float | None = None
    """The local engine's mean KV cells in use at a ``llama_decode``."""
    decode_share: float | None = None
    """The local engine's time in ``llama_decode`` over the wall time."""
    trace: list[DecodeShape] | None = None
    """The local engine's decodes (:attr:`Engine.trace`)."""


class Trie:
    """Counts the distinct prompt tokens of a set of prompts (the nodes of their trie)."""

    def __init__(self) -> None:
        self.root: dict[int, Any] = {}
        self.size = 0

    def add(self, tokens: list[int]) -> None:
        node = self.root
        for token in tokens:
            if token not in node:
                node[token] = {}
                self.size += 1
            node = node[token]


class Recorder:
    """Forwards to a provider and a scorer, keeping every prompt they were asked about."""

    def __init__(self, provider: Any, scorer: Any = None) -> None:
        self.provider, self.scorer = provider, scorer
        self.prompts: set[tuple[str, str]] = set()
        self.judged: set[tuple[str, tuple[str, ...]]] = set()
        self.tokens = 0
        """Completion tokens generated."""
        self.completions = 0
        self.search_defaults: dict[str, Any] = {}

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        self.prompts.add((request.problem, "".join(request.steps)))
        out: list[StepCompletion] = await self.provider.generate(request)
        self.tokens += sum(c.completion_tokens for c in out)
        self.completions += len(out)
        return out

    async def score(self, request: ScoreRequest) -> list[list[float]]:
        for steps in request.solutions:
            self.judged.update((request.problem, steps[:k]) for k in range(1, len(steps) + 1))
        scores: list[list[float]] = await self.scorer.score(request)
        return scores


# -- contenders ---------------------------------------------------------------------------------


class Sequential:
    """``Llama.create_completion`` one sequence at a time (llama-cpp-python reuses the prefix
    shared with the sequence it evaluated last)."""

    def __init__(self, path: str, local: LlamaCppProvider, args: argparse.Namespace) -> None:
        self.llm = load_llama(
            path, repack=args.repack, n_ctx=4096, n_threads=args.threads, verbose=False
        )
        self.local = local
        self.lock = anyio.Lock()
        self.evaluated = 0

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        async with self.lock:
            return await anyio.to_thread.run_sync(self._generate, request)

    def _generate(self, request: StepRequest) -> list[StepCompletion]:
        tokens = self.local.tokenize_prompt(request.problem, "".join(request.steps))
        out: list[StepCompletion] = []
        for i in range(request.n):
            cached = self.llm.longest_token_prefix(self.llm._input_ids.tolist(), tokens)
            self.evaluated += len(tokens) - min(cached, len(tokens) - 1)  # then 1 per token
            done = self.llm.create_completion(
                tokens,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                top_p=request.top_p,
                top_k=0,
                min_p=0.0,
                repeat_penalty=1.0,
                stop=list(request.stop),
                seed=(request.seed or 0) + i,
            )
            choice, usage = done["choices"][0], done["usage"]
            stopped = choice["finish_reason"] == "stop" and request.stop
            text = choice["text"] + (request.stop[0] if stopped else "")
            self.evaluated += usage["completion_tokens"] - 1  # sampled tokens fed back
            out.append(
                StepCompletion(
                    text=text,
                    finish_reason="step" if stopped else "length",
                    prompt_tokens=len(tokens),
                    completion_tokens=usage["completion_tokens"],
                )
            )
        return out

    def close(self) -> None:
        self.llm.close()


class LlamaServer:
    """``llama-server -np 16 -kvu`` on the model, on a free local port, with ``--metrics``."""

    def __init__(self, binary: str, model: str, args: argparse.Namespace) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        command = [binary, "-m", model, "-np", "16", "-kvu", "-c", str(args.n_ctx)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--metrics"]
        if args.threads:
            command += ["-t", str(args.threads)]
        if args.repack == "off":
            command += ["--no-repack"]
        # Its log (a few lines per request) goes to a file: a pipe nobody reads fills up after
        # some 64 KB, and then the server blocks writing to it, every slot idle.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                err = self.log.read().decode(errors="replace")
                raise RuntimeError(f"llama-server exited ({self.proc.returncode}): {err[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("llama-server did not start in 180 s") from None
                time.sleep(0.3)

    def prompt_tokens_total(self) -> int:
        """Prompt tokens the server evaluated so far (its ``prompt_tokens_total`` metric)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text = r.read().decode()
        found = re.search(r"^llamacpp:prompt_tokens_total\s+([0-9.e+]+)", text, re.M)
        return int(float(found.group(1))) if found else 0

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def server_provider(
    server: LlamaServer, local: LlamaCppProvider, *, n: bool, timeout_s: float = 300.0
) -> Any:
    """The project's OpenAI provider on ``server``, prompting exactly as ``local`` does; ``n``:
    one request with ``n`` per parent, else ``n`` requests."""
    from providers.openai_compat import OpenAIProvider
    from providers.openai_compat.templates import FormatTemplate

    return OpenAIProvider(
        "gemma",
        server.base_url,
        mode="completions",
        server="llama_server",
        template=FormatTemplate(getattr(local.template, "source", "{problem}\n\n")),
        supports_n=n,
        extra_body={"top_k": 0, "min_p": 0.0},
        timeout_s=timeout_s,
    )


BENCH_SIZES = (1, 2, 4, 8, 16, 32)
PREFILL = 0
"""The key of batched-bench's prompt tokens/s in :func:`batched_bench`'s answer."""


def at_batch(ceiling: dict[int, float], batch: float) -> float | None:
    """batched-bench's decode tokens/s at ``batch`` sequences: interpolated between the sizes
    it ran (linearly in log batch size), or ``None`` outside them."""
    sizes = sorted(size for size in ceiling if size != PREFILL)
    for low, high in itertools.pairwise(sizes):
        if low <= batch <= high:
            t = (math.log(batch) - math.log(low)) / (math.log(high) - math.log(low))
            return ceiling[low] + t * (ceiling[high] - ceiling[low])
    return ceiling.get(round(batch))


def batched_bench(binary: str, model: str, args: argparse.Namespace) -> dict[int, float]:
    """llama-batched-bench's decode tokens/s (S_TG) at batch sizes 1 to 32, and under key 0
    its prompt tokens/s (S_PP: 256-token prompts; the median over the sizes)."""
    command = [binary, "-m", model, "-c", "4096", "-b", "2048", "-ub", "512", "-npp", "256"]
    command += ["-ntg", str(args.step_tokens), "-npl", ",".join(map(str, BENCH_SIZES)), "-pps"]
    command += ["-kvu"]
    if args.threads:
        command += ["-t", str(args.threads)]
    if args.repack == "off":
        command += ["--no-repack"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout
    rates: dict[int, float] = {}
    prefill: list[float] = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and cells[2].isdigit():
            rates[int(cells[2])] = float(cells[7])  # B, S_TG t/s
            prefill.append(float(cells[5]))  # S_PP t/s
    if prefill:
        rates[PREFILL] = statistics.median(prefill)
    return rates


def same_decodes(ceiling: dict[int, float], trace: list[DecodeShape]) -> float:
    """batched-bench's seconds for the engine's own decodes, each priced at its own batch: a
    decode's sampled rows at batched-bench's decode speed at that many sequences (its speed at
    the nearest size it ran outside them), its prompt rows at its prompt speed."""
    sizes = sorted(size for size in ceiling if size != PREFILL)
    seconds = 0.0
    for d in trace:
        if d.sampled:
            size = min(max(d.sampled, sizes[0]), sizes[-1])
            rate = at_batch(ceiling, size) or ceiling[sizes[-1]]
            seconds += d.sampled / rate
        seconds += (d.rows - d.sampled - d.padded) / ceiling[PREFILL]
    return seconds


# -- workloads ----------------------------------------------------------------------------------


async def tree(provider: Any, args: argparse.Namespace) -> tuple[Recorder, float]:
    """The tree 1x16 -> 4x4 -> 8x2; returns the recorder and the seconds."""
    rec = Recorder(provider)
    start = time.perf_counter()
    frontier: list[tuple[str, ...]] = [STEPS]
    for keep, width in TREE:
        nodes = frontier[:keep]
        results: list[list[StepCompletion]] = [[] for _ in nodes]

        async def expand(
            i: int, steps: tuple[str, ...], width: int = width, results: Any = results
        ) -> None:
            results[i] = await rec.generate(
                StepRequest(
                    problem=PROBLEM,
                    steps=steps,
                    n=width,
                    max_tokens=args.step_tokens,
                    stop=("\n",),
                    temperature=1.0,
                    seed=100 * len(steps) + i,
                )
            )

        async with anyio.create_task_group() as tg:
            for i, steps in enumerate(nodes):
                tg.start_soon(expand, i, steps)
        frontier = [(*s, c.text) for s, out in zip(nodes, results, strict=True) for c in out]
        frontier = [f for f in frontier if f[-1].strip()] or frontier
    return rec, time.perf_counter() - start


async def evaluate(
    provider: Any, scorer: Any, args: argparse.Namespace
) -> tuple[Recorder, float, int]:
    """REBASE on the chains, ``args.concurrency`` at once; returns recorder, seconds, correct."""
    rec = Recorder(provider, scorer)
    chains = generate_chains(args.problems, steps=args.chain_steps, seed=0)
    config = RebaseConfig(
        budget=args.budget,
        step_delimiters=("\n",),
        max_depth=args.chain_steps + 2,
        max_step_tokens=32,
        answer_equivalence="normalized",
        aggregation="weighted_majority",
        temperature=1.0,
        seed=0,
    )
    limiter = anyio.CapacityLimiter(args.concurrency)
    correct = 0

    async def one(chain: Any) -> None:
        nonlocal correct
        async with limiter:
            result = await solve(chain.question, provider=rec, scorer=rec, config=config)
        correct += result.answer == str(chain.answer)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for chain in chains:
            tg.start_soon(one, chain)
    return rec, time.perf_counter() - start, correct


def decode(provider: LlamaCppProvider, width: int, args: argparse.Namespace) -> tuple[int, float]:
    async def go() -> tuple[int, float]:
        tokens, start = 0, time.perf_counter()
        for r in range(args.sequences // width):
            out = await provider.generate(
                StepRequest(
                    problem=PROBLEM,
                    steps=STEPS,
                    n=width,
                    max_tokens=args.step_tokens,
                    stop=(),
                    seed=r * width,
                )
            )
            tokens += sum(c.completion_tokens for c in out)
        return tokens, time.perf_counter() - start

    return anyio.run(go)


# -- the run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def local_pair(
    model: LlamaModel,
    args: argparse.Namespace,
    top_k: int,
    template: str | None,
    *,
    n_ubatch: int | None = None,
    even_outputs: bool = True,
) -> Iterator[tuple[LlamaCppProvider, LlamaCppScorer]]:
    """The provider and, sharing its context, the judge."""
    provider = LlamaCppProvider(
        model,
        n_ctx=args.n_ctx,
        n_seq_max=args.n_seq_max,
        n_threads=args.threads,
        n_ubatch=n_ubatch,
        even_outputs=even_outputs,
        top_k=top_k,
        template=template,
    )
    policy_prompt = provider.tokenize_prompt if args.judge_prompt == "policy" else None
    scorer = LlamaCppScorer(model, n_threads=args.threads, judge_prefix=policy_prompt)
    try:
        yield provider, scorer
    finally:
        scorer.close()
        provider.close()


class Shape:
    """Tokenizes prompts exactly as the provider does, for the unique-token count."""

    def __init__(self, model: LlamaModel, template: str | None, judge_prompt: str) -> None:
        self.policy = LlamaCppProvider(model, n_ctx=256, n_seq_max=2, template=template)
        prefix = self.policy.tokenize_prompt if judge_prompt == "policy" else None
        self.judge = LlamaCppScorer(
            model, n_ctx=256, n_seq_max=2, share_context=False, judge_prefix=prefix
        )

    def unique(self, rec: Recorder) -> int:
        trie = Trie()
        for problem, solution in rec.prompts:
            trie.add(self.policy.tokenize_prompt(problem, solution))
        for problem, steps in rec.judged:
            trie.add(self.judge.judge_tokens(problem, steps))
        return trie.size

    def close(self) -> None:
        self.judge.close()
        self.policy.close()


def run_contender(
    workload: str,
    name: str,
    model: LlamaModel,
    path: str,
    shape: Shape,
    server: LlamaServer | None,
    args: argparse.Namespace,
) -> Row:
    """One contender on one workload, from a fresh cache."""
    template = FEW_SHOT_TEMPLATE if workload == "eval" else None

    def row(
        rec: Recorder,
        seconds: float,
        evaluated: int | None,
        note: str = "",
        engine: tuple[float, float] | None = None,
    ) -> Row:
        unique = shape.unique(rec)
        busy = "" if engine is None else f", batch {engine[0]:.1f}, decoding {engine[1]:.0%}"
        print(
            f"  {workload:<5} {name:<22} {rec.tokens:6d} tokens {seconds:7.1f} s "
            f"{rec.tokens / seconds:7.1f} tok/s, prompt evaluated {evaluated} / unique {unique}"
            f"{busy}",
            flush=True,
        )
        batch, share = engine if engine is not None else (None, None)
        return Row(
            workload,
            name,
            rec.tokens,
            seconds,
            evaluated,
            unique,
            note,
            batch=batch,
            decode_share=share,
        )

    if name == "sequential":
        seq = Sequential(path, shape.policy, args)
        try:
            rec, seconds = anyio.run(tree, seq, args)
        finally:
            seq.close()
        return row(rec, seconds, seq.evaluated - (rec.tokens - rec.completions))
    if name == "llama-server (ours)":
        assert server is not None
        from providers.openai_compat import JudgeScorer
        from providers.openai_compat.slots import forget

        # ``n`` per parent, as the provider sends it by default: one request per choice makes
        # every choice evaluate its prompt in a slot of its own, which measured slower than
        # llama-server's wait for n free slots at once (see the README's llama-server notes).
        policy = server_provider(server, shape.policy, n=True, timeout_s=args.server_timeout)
        # The judge reads llama-server's /completions logprobs (api="auto" probes the layout).
        judge = JudgeScorer("gemma", server.base_url, api="auto", timeout_s=args.server_timeout)

        async def both() -> tuple[Recorder, float, int, int]:
            """The run, and the prompt tokens the server evaluated for it (after the probe)."""
            try:
                await prepare(policy, judge)  # the probe, as every command runs it
                if args.server_slots == "off":  # requests no longer wait for free slots here
                    forget(server.base_url.removesuffix("/v1"))
                before = await anyio.to_thread.run_sync(server.prompt_tokens_total)
                if workload == "tree":
                    rec, seconds, correct = (*(await tree(policy, args)), -1)
                else:
                    rec, seconds, correct = await evaluate(policy, judge, args)
                after = await anyio.to_thread.run_sync(server.prompt_tokens_total)
                return rec, seconds, correct, after - before
            finally:
                await policy.aclose()
                await judge.aclose()

        rec, seconds, correct, evaluated = anyio.run(both)
        return row(rec, seconds, evaluated, f"{correct}/{args.problems}" if correct >= 0 else "")
    top_k = args.top_k if name.startswith("provider top-k") else 0
    ubatch = 512 if name == "provider ubatch 512" else None
    even = name != "provider odd rows"
    pair = local_pair(model, args, top_k, template, n_ubatch=ubatch, even_outputs=even)
    with pair as (provider, scorer):
        e = provider.engine
        e.trace = []
        before = e.tokens_evaluated
        calls, sampled, busy = e.decode_calls, e.sampled_rows, e.decode_s
        if workload == "tree":
            rec, seconds = anyio.run(tree, provider, args)
            note = ""
        else:
            rec, seconds, correct = anyio.run(evaluate, provider, scorer, args)
            note = f"{correct}/{args.problems}"
        # Every token evaluated, less the sampled ones fed back (all but each sequence's last).
        evaluated = e.tokens_evaluated - before - (rec.tokens - rec.completions)
        decodes = max(1, e.decode_calls - calls)
        batch = (e.sampled_rows - sampled) / decodes
        got = row(rec, seconds, evaluated, note, (batch, (e.decode_s - busy) / seconds))
        got.trace, e.trace = e.trace, None
        got.cells = statistics.fmean(d.cells for d in got.trace) if got.trace else 0.0
        outputs = sum(d.outputs - d.sampled for d in got.trace)
        print(
            f"  {workload:<5} {name:<22} {got.cells:.0f} KV cells in use at a decode; "
            f"{outputs} prompt rows with logits",
            flush=True,
        )
        if args.trace:
            with open(f"{args.trace}.{workload}.{name.replace(' ', '-')}.jsonl", "w") as f:
                f.writelines(json.dumps(d._asdict()) + "\n" for d in got.trace)
        return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF path (default: the bundled Gemma 3 270M)")
    parser.add_argument("--workloads", default="tree,eval", help="tree, eval, decode")
    parser.add_argument(
        "--skip",
        default="",
        help="contenders to leave out: sequential, provider, odd (the provider without "
        "even_outputs), ubatch (the provider computing 512 rows at once, as before), topk",
    )
    parser.add_argument("--step-tokens", type=int, default=48, help="most tokens per step")
    parser.add_argument("--problems", type=int, default=16, help="eval: arithmetic chains")
    parser.add_argument("--chain-steps", type=int, default=3, help="eval: operations per chain")
    parser.add_argument("--budget", type=int, default=4, help="eval: REBASE budget")
    parser.add_argument("--concurrency", type=int, default=8, help="eval: searches in flight")
    parser.add_argument("--sequences", type=int, default=16, help="decode: continuations")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--n-ctx", type=int, default=16384)
    parser.add_argument(
        "--n-seq-max", type=int, default=128, help="the provider's sequences (cached prefixes too)"
    )
    parser.add_argument("--top-k", type=int, default=40, help="the provider's cheaper sampling")
    parser.add_argument(
        "--judge-prompt",
        choices=("own", "policy"),
        default="own",
        help="eval: the local judge's prompt: the judge template's, or its question after the "
        "policy's own prompt (judge_prefix of LlamaCppScorer); llama-server's judge keeps its own",
    )
    parser.add_argument("--llama-server", default=None, help="llama-server binary")
    parser.add_argument("--batched-bench", default=None, help="llama-batched-bench binary")
    parser.add_argument(
        "--server-timeout",
        type=float,
        default=3600.0,
        help="llama-server: deadline of one request (its queue on 2 cores runs past 300 s)",
    )
    parser.add_argument(
        "--server-slots",
        choices=["on", "off"],
        default="on",
        help="llama-server: requests take its slots first (providers.openai_compat.slots), or "
        "are sent as they come and queue in the server",
    )
    parser.add_argument("--repack", choices=["auto", "on", "off"], default=None)
    parser.add_argument(
        "--trace",
        default=None,
        metavar="PREFIX",
        help="write the local engine's decodes (rows, sampled, outputs, cells, seconds) to "
        "PREFIX.WORKLOAD.CONTENDER.jsonl",
    )
    args = parser.parse_args()
    # A `timeout` in front of the run still stops the llama-server started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(level=logging.WARNING)
    path = args.model or default_model_path()
    workloads = args.workloads.split(",")
    skip = set(args.skip.split(",")) - {""}
    model = LlamaModel(path, repack=args.repack)
    rows: list[Row] = []
    ceiling: dict[int, float] = {}
    print(f"model {path}, threads {args.threads or 'default'}", flush=True)
    if args.batched_bench:
        ceiling = batched_bench(args.batched_bench, path, args)
        print(f"  llama-batched-bench decode tok/s by batch size: {ceiling}", flush=True)
    server = LlamaServer(args.llama_server, path, args) if args.llama_server else None
    try:
        with local_pair(model, args, 0, None) as (warm, _):
            anyio.run(tree, warm, argparse.Namespace(step_tokens=4))  # warm-up
            if "decode" in workloads:
                for width in (1, 4, 8, 16):
                    tokens, seconds = decode(warm, width, args)
                    rows.append(Row("decode", f"provider width {width}", tokens, seconds, None, 0))
        for workload in ("tree", "eval"):
            if workload not in workloads:
                continue
            names = ["sequential"] if workload == "tree" and "sequential" not in skip else []
            if "provider" not in skip:
                names.append("provider exact")
            if "odd" not in skip:
                names.append("provider odd rows")
            if "ubatch" not in skip:
                names.append("provider ubatch 512")
            if "topk" not in skip:
                names.append(f"provider top-k {args.top_k}")
            if server is not None:
                names.append("llama-server (ours)")
            shape = Shape(
                model, FEW_SHOT_TEMPLATE if workload == "eval" else None, args.judge_prompt
            )
            try:
                for name in names:
                    rows.append(run_contender(workload, name, model, path, shape, server, args))
            finally:
                shape.close()
    finally:
        if server is not None:
            server.close()
        model.close()
    report(rows, ceiling, args)


def report(rows: list[Row], ceiling: dict[int, float], args: argparse.Namespace) -> None:
    """Print the table (Markdown)."""
    top = ceiling.get(16)
    print(
        f"\ntree {' -> '.join(f'{a}x{b}' for a, b in TREE)}, steps <= {args.step_tokens} tokens "
        f"ending at a newline; eval: {args.problems} arithmetic chains, {args.concurrency} "
        f"searches in flight, budget {args.budget}, LLM judge on the same model\n"
    )
    print(
        "| workload | contender | tokens | s | tok/s | of batched-bench (16) "
        "| batch, decoding, KV cells | of batched-bench at that batch "
        "| of the same work at its speeds | prompt evaluated / unique | correct |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        rate = r.tokens / r.seconds if r.seconds else 0.0
        frac = f"{rate / top:.2f}" if top else "-"
        same, engine, work = "-", "-", "-"
        if r.batch is not None and r.decode_share is not None:
            engine = f"{r.batch:.1f}, {r.decode_share:.0%}"
            if r.cells is not None:
                engine += f", {r.cells:.0f} cells"
            bench = at_batch(ceiling, r.batch) if ceiling else None
            same = f"{rate / bench:.2f}" if bench else "-"
            if bench and ceiling.get(PREFILL) and r.evaluated is not None:
                # batched-bench's time for the same tokens: sampled at its decode speed at this
                # batch, prompt tokens (policy and judge) at its prompt speed
                ideal = r.tokens / bench + r.evaluated / ceiling[PREFILL]
                work = f"{ideal / r.seconds:.2f}"
                if r.trace:
                    work += f", {same_decodes(ceiling, r.trace) / r.seconds:.2f}"
        ratio = "-"
        if r.evaluated is not None and r.unique:
            ratio = f"{r.evaluated / r.unique:.2f} ({r.evaluated}/{r.unique})"
        print(
            f"| {r.workload} | {r.contender} | {r.tokens} | {r.seconds:.1f} | {rate:.1f} "
            f"| {frac} | {engine} | {same} | {work} | {ratio} | {r.note} |"
        )
    if ceiling:
        print(
            "\nllama-batched-bench (-npp 256 -pps -kvu) decode tok/s: "
            + ", ".join(f"{b} sequences {v:.1f}" for b, v in sorted(ceiling.items()) if b)
            + f"; prompt tok/s {ceiling.get(PREFILL, 0.0):.1f}"
        )


if __name__ == "__main__":
    main()
