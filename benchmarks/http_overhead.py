"""HTTP overhead of REBASE over the OpenAI-compatible provider, against a fixed-latency server.

The policy server (``benchmarks/fake_openai_server.py``) runs in its own process, so its CPU is
not charged to the client: it answers every request after a latency L, honours ``n``, and every
solution ends after D steps. The PRM is an in-process scorer that sleeps L per call. REBASE at
budget 64 then ideally takes D × 2L. Each workload is run three ways in the same sitting:

- **provider**: ``OpenAIProvider`` under ``RebaseSearch`` (its direct HTTP/1.1 path), on the
  event loop and frozen heap the commands use (``--loop``, ``--heap`` for the others), with
  its default for vLLM of one request per problem and depth carrying every node's prompts
  (``batch_prompts``; the search is unseeded so that it applies), and again with one request
  per node (``batch_prompts=False``);
- **no HTTP (search alone)**: the search with an in-process policy that sleeps L: the cost of
  the search itself, so "provider minus search alone" is what the provider adds;
- with ``--compare``: the provider over the ``openai`` client (its default ``httpx2``
  transport, models and all);
- with ``--http-judge``: the provider with a :class:`JudgeScorer` over HTTP on the same fake
  server (which answers a judge's request after L with the label's logprobs, as the in-process
  scorer scores), ``batch_size`` 64 and 1;
- **floor (aiohttp / httpx2 / http1)**: a bare client sending the same requests (the same ``n``
  per node, depth by depth, each answer followed by the scorer's sleep), with no search around
  it; ``http1`` is the provider's own client (:mod:`providers.openai_compat.http1`) alone;

and reports wall / ideal, wall / floor (the bare-aiohttp floor of the same run), and the
client's CPU per request (``time.process_time`` / the search's generation requests, one per
expanded node, however many HTTP requests carried them: CPU time, not wall, so it holds on a
loaded machine).

``--routing`` instead measures cache-aware routing over two replicas with a prefix-cache latency
model (prompt words evaluated, least-loaded vs affinity), with one request per node.

Run from the repository root::

    python benchmarks/http_overhead.py                 # the issue's table (about 3-5 minutes)
    python benchmarks/http_overhead.py --only 1,3      # some workloads
    python benchmarks/http_overhead.py --routing       # routing over two replicas
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import aiohttp
import anyio
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from providers.openai_compat import JudgeScorer, OpenAIProvider
from providers.openai_compat.endpoints import EndpointPool
from providers.openai_compat.http1 import HttpClient
from rebase_agent import (
    RebaseConfig,
    RebaseSearch,
    ScoreRequest,
    SearchResult,
    StepCompletion,
    StepRequest,
)
from rebase_agent.commands import event_loop_options, frozen_startup_heap

BACKEND_OPTIONS: dict[str, Any] = {}
"""anyio's asyncio backend options of every run (``--loop uvloop``: ``use_uvloop``)."""


def _run(func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return anyio.run(func, *args, backend_options=BACKEND_OPTIONS)


SERVER = Path(__file__).resolve().parent / "fake_openai_server.py"
BUDGET = 64
RAISED = 100_000
"""'Limits raised': every concurrency limit out of the way."""


@dataclass(frozen=True)
class Workload:
    name: str
    latency_s: float
    depth: int
    problems: int
    raised: bool
    """The search's limits (``max_concurrent_requests``, ``max_concurrent_scores``) raised."""
    provider_raised: bool | None = None
    """The provider's per-endpoint limit fixed out of the way; ``None``: as ``raised``;
    ``False``: the provider's default (adaptive)."""


WORKLOADS = {
    1: Workload("one search, defaults (L=0.2 s, D=8)", 0.2, 8, 1, False),
    2: Workload("one search, limits raised (L=0.2 s, D=8)", 0.2, 8, 1, True),
    3: Workload("32 problems at once, limits raised (L=1 s, D=4)", 1.0, 4, 32, True),
    4: Workload("32 problems at once, defaults (L=1 s, D=4)", 1.0, 4, 32, False),
    5: Workload("one search, provider defaults, search limits raised", 0.2, 8, 1, True, False),
    6: Workload("32 problems, provider defaults, search limits raised", 1.0, 4, 32, True, False),
}


@contextmanager
def fake_server(*args: str) -> Iterator[list[str]]:
    """Start the fake server in its own process; yields its base URLs."""
    process = subprocess.Popen(
        [sys.executable, str(SERVER), *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if not line or line[0] != "PORTS":
            raise RuntimeError(f"fake server did not start: {line}")
        yield [f"http://127.0.0.1:{port}/v1" for port in line[1:]]
    finally:
        process.terminate()
        process.wait(10)


class SleepingScorer:
    """The PRM: sleeps L per call; a step with ``choice 0`` scores 0.9, others 0.5."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.calls = 0

    async def score(self, request: ScoreRequest) -> list[list[float]]:
        self.calls += 1
        await anyio.sleep(self.latency_s)
        return [[0.9 if "choice 0" in s else 0.5 for s in steps] for steps in request.solutions]


class InProcessPolicy:
    """The fake server's model without HTTP: sleeps L per request (the search's own cost)."""

    def __init__(self, latency_s: float, depth: int) -> None:
        self.latency_s, self.depth = latency_s, depth
        self.requests = 0

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        self.requests += 1
        await anyio.sleep(self.latency_s)
        d = len(request.steps)
        if d >= self.depth - 1:
            answer = StepCompletion(text="The answer is \\boxed{4}.", finish_reason="eos")
            return [answer] * request.n
        return [
            StepCompletion(text=f"Step {d + 1}: choice {i}.\n\n", finish_reason="step")
            for i in range(request.n)
        ]


def problems(count: int, words: int = 0) -> list[str]:
    filler = " ".join(f"w{j}" for j in range(words))
    return [f"Problem {i}: what is 2 + 2? {filler}".strip() for i in range(count)]


def pattern(result: SearchResult) -> list[list[int]]:
    """Per depth, the ``n`` of every provider request the search sent (one per expanded node)."""
    children: dict[int, int] = defaultdict(int)
    for node in result.nodes:
        if node.parent is not None:
            children[node.parent] += 1
    depth_of = {node.id: node.depth for node in result.nodes}
    rounds: dict[int, list[int]] = defaultdict(list)
    for parent, count in children.items():
        rounds[depth_of[parent]].append(count)
    return [rounds[d] for d in sorted(rounds)]


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    requests: int
    detail: str = ""


Via = Literal["direct", "openai", "none"]


async def run_provider(
    urls: list[str],
    workload: Workload,
    *,
    routing: str = "cache_aware",
    words: int = 0,
    via: Via = "direct",
    balance: tuple[int, float] = (32, 1.5),
    batch: bool | None = None,
    judge: int | None = None,
) -> tuple[Run, list[SearchResult]]:
    """Solve the workload's problems with the provider under ``RebaseSearch``; ``via``:
    its JSON hot path, the ``openai`` client for every request, or no HTTP at all; ``batch``:
    the provider's ``batch_prompts`` (default: on, a vLLM server); ``judge``: score with a
    :class:`JudgeScorer` over HTTP on the same fake server, ``batch_size=judge``, instead of
    the in-process scorer.

    ``Run.requests`` counts the search's generation requests (one per expanded node), however
    many HTTP requests carried them (in the detail)."""
    raised = workload.raised if workload.provider_raised is None else workload.provider_raised
    fixed = RAISED if raised else None
    pool = EndpointPool(
        urls,
        max_concurrency=fixed,
        routing=routing,  # type: ignore[arg-type]
        balance_abs_threshold=balance[0],
        balance_rel_threshold=balance[1],
    )
    config = RebaseConfig(budget=BUDGET, max_depth=workload.depth)  # unseeded: batched
    if workload.raised:
        config = config.model_copy(
            update={"max_concurrent_requests": RAISED, "max_concurrent_scores": RAISED}
        )
    scorer: SleepingScorer | JudgeScorer = SleepingScorer(workload.latency_s)
    if judge is not None:
        scorer = JudgeScorer("m", urls, api="completions", batch_size=judge)
    provider = OpenAIProvider("m", urls, server="vllm", endpoints=pool, batch_prompts=batch)
    async with provider, scorer if isinstance(scorer, JudgeScorer) else nullcontext():
        for endpoint in pool.endpoints:
            endpoint.transport.direct = via == "direct"
        policy = InProcessPolicy(workload.latency_s, workload.depth)
        search = RebaseSearch(policy if via == "none" else provider, scorer, config)
        await search.solve("warm up")  # imports, connections

        def sent() -> int:
            return sum(e.requests for e in pool.endpoints)

        before = sent()
        cpu, wall = time.process_time(), time.perf_counter()
        results = await search.solve_many(
            problems(workload.problems, words), max_concurrent=workload.problems
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        limits = "/".join(str(e.limit.limit) for e in pool.endpoints)
    expansions = sum(r.usage.provider_requests for r in results)
    detail = f"{sent() - before} HTTP requests; limit at end {limits}" if via != "none" else ""
    if len(pool.endpoints) > 1:
        detail = f"{sent() - before} HTTP requests; {pool.escapes}"
    return Run(wall, cpu, expansions, detail), results


def _body(problem: str, depth: int, n: int) -> dict[str, Any]:
    prompt = problem + "\n\n" + "".join(f"Step {d + 1}: choice 0.\n\n" for d in range(depth))
    body: dict[str, Any] = {"model": "m", "prompt": prompt, "max_tokens": 256, "n": n}
    body.update(temperature=1.0, top_p=1.0, stop=["\n\n"], include_stop_str_in_output=True)
    return body


async def run_floor(
    kind: Literal["aiohttp", "httpx2", "http1"],
    url: str,
    patterns: list[list[list[int]]],
    latency_s: float,
) -> Run:
    """The same requests with a bare client: depth by depth, each answer then a scorer sleep."""
    post: Callable[[dict[str, Any]], Awaitable[object]]
    if kind == "aiohttp":
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        async def post_aiohttp(body: dict[str, Any]) -> object:
            data = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", "Authorization": "Bearer EMPTY"}
            async with session.post(url + "/completions", data=data, headers=headers) as r:
                return json.loads(await r.read())

        post, close = post_aiohttp, session.close
    elif kind == "http1":
        http = HttpClient({"Content-Type": "application/json", "Authorization": "Bearer EMPTY"})

        async def post_http1(body: dict[str, Any]) -> object:
            return json.loads(
                (await http.post(url + "/completions", json.dumps(body).encode())).content
            )

        post, close = post_http1, http.aclose
    else:
        unlimited = httpx2.Limits(max_connections=None, max_keepalive_connections=None)
        client = httpx2.AsyncClient(limits=unlimited, timeout=600)

        async def post_httpx(body: dict[str, Any]) -> object:
            response = await client.post(url + "/completions", json=body)
            return json.loads(response.content)

        post, close = post_httpx, client.aclose

    async def one(problem: str, depth: int, n: int) -> None:
        await post(_body(problem, depth, n))
        await anyio.sleep(latency_s)

    async def search(problem: str, rounds: list[list[int]]) -> None:
        for depth, widths in enumerate(rounds):
            async with anyio.create_task_group() as tg:
                for n in widths:
                    tg.start_soon(one, problem, depth, n)

    names = problems(len(patterns))
    await one("warm up", 0, 1)
    cpu, wall = time.process_time(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        for problem, rounds in zip(names, patterns, strict=True):
            tg.start_soon(search, problem, rounds)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await close()
    return Run(wall, cpu, sum(len(w) for rounds in patterns for w in rounds))


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def table(selected: list[int], compare: bool, http_judge: bool = False) -> None:
    """Run the workloads and print one row per way of running them."""
    print(f"REBASE budget {BUDGET}, ideal = D x 2L; {load()}")
    header = (
        "| workload | client | wall/ideal | wall/floor | requests | CPU ms/request | notes |\n"
        "|---|---|---|---|---|---|---|"
    )
    print(header, flush=True)
    for key in selected:
        w = WORKLOADS[key]
        ideal = w.depth * 2 * w.latency_s
        with fake_server("--latency", str(w.latency_s), "--depth", str(w.depth)) as urls:
            got, results = _run(run_provider, urls, w)
            single = _run(partial(run_provider, urls, w, batch=False))[0]
            alone = _run(partial(run_provider, urls, w, via="none"))[0]
            extra: list[tuple[str, Run]] = [
                ("provider, a request per node (batch_prompts=False)", single),
                ("no HTTP (search alone)", alone),
            ]
            if compare:
                run = _run(partial(run_provider, urls, w, via="openai"))[0]
                extra.append(("provider, openai client", run))
            if http_judge:
                for size in (64, 1):
                    run = _run(partial(run_provider, urls, w, judge=size))[0]
                    extra.append((f"provider, judge over HTTP, batch_size={size}", run))
            patterns = [pattern(r) for r in results]
            floors = {
                kind: _run(run_floor, kind, urls[0], patterns, w.latency_s)
                for kind in ("aiohttp", "httpx2", "http1")
            }
        floor = floors["aiohttp"].wall_s
        widest = max(sum(rounds[d]) for rounds in patterns for d in range(len(rounds)))
        depths = max(len(rounds) for rounds in patterns)
        at_once = max(
            sum(len(rounds[d]) for rounds in patterns if d < len(rounds)) for d in range(depths)
        )

        def per_request(run: Run) -> float:
            return run.cpu_s / max(1, run.requests) * 1e3

        for run in (got, single):
            added = per_request(run) - per_request(alone)
            run.detail += f"; adds {added:.3f} ms/request over the search alone"
        got.detail += (
            f"; widest depth of one problem: {widest} choices; up to {at_once} requests a depth"
        )
        rows: list[tuple[str, Run]] = [("provider", got), *extra]
        rows += [(f"floor: bare {kind}", run) for kind, run in floors.items()]
        for label, run in rows:
            print(
                f"| {w.name} | {label} | {run.wall_s / ideal:.2f} | {run.wall_s / floor:.3f} | "
                f"{run.requests} | {run.cpu_s / max(1, run.requests) * 1e3:.3f} | "
                f"{run.detail.lstrip('; ')} |",
                flush=True,
            )
    print(f"after: {load()}")


async def _stats(urls: list[str]) -> list[dict[str, int]]:
    async with aiohttp.ClientSession() as session:
        out = []
        for url in urls:
            async with session.get(url.removesuffix("/v1") + "/stats") as r:
                out.append(json.loads(await r.read()))
        return out


def routing(
    count: int, words: int, per_token_ms: float, cache_blocks: int, step_words: int
) -> None:
    """Least-loaded vs cache-aware routing over two replicas with a prefix-cache model."""
    w = Workload(f"{count} problems, 2 replicas", 0.2, 6, count, True, False)
    print(
        f"{count} problems at once, REBASE budget {BUDGET}, D={w.depth}, L={w.latency_s} s + "
        f"{per_token_ms} ms per uncached prompt word, prompts of ~{words} words, steps of "
        f"~{step_words + 4} words, "
        f"{cache_blocks} cache blocks of 16 words per replica; {load()}"
    )
    print(
        "| routing | prompt words sent | evaluated (not cached) | hit rate | requests per replica "
        "| escapes | wall s |"
    )
    print("|---|---|---|---|---|---|---|")
    policies = [
        ("least_loaded", "least_loaded", (32, 1.5)),
        (
            "cache_aware, sgl-router's thresholds (+32 and 1.5x) or limit full",
            "cache_aware",
            (32, 1.5),
        ),
        ("cache_aware, defaults (+512 and 2x) or limit full", "cache_aware", (512, 2.0)),
    ]
    for label, policy, balance in policies:
        args = ["--latency", str(w.latency_s), "--depth", str(w.depth), "--replicas", "2"]
        args += ["--per-token-ms", str(per_token_ms), "--cache-blocks", str(cache_blocks)]
        args += ["--step-words", str(step_words)]
        with fake_server(*args) as urls:
            # One request per node: what a replica's cache sees from routing alone.
            run = partial(run_provider, urls, w, routing=policy, words=words, batch=False)
            got, _ = _run(partial(run, balance=balance))
            stats = _run(_stats, urls)
        sent = sum(s["prompt_words"] for s in stats)
        evaluated = sum(s["evaluated_words"] for s in stats)
        split = "/".join(str(s["requests"]) for s in stats)
        print(
            f"| {label} | {sent} | {evaluated} | {1 - evaluated / max(1, sent):.1%} | "
            f"{split} | {got.detail} | {got.wall_s:.2f} |",
            flush=True,
        )


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        default="1,2,3,4",
        help="workloads to run, e.g. 1,3 (5 and 6: the provider's defaults under raised search "
        "limits, which the search's defaults now equal)",
    )
    parser.add_argument("--routing", action="store_true", help="measure routing instead")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run the provider over the openai client, and the search without HTTP",
    )
    parser.add_argument(
        "--heap",
        choices=("frozen", "collected"),
        default="frozen",
        help="frozen: the startup heap kept out of full collections, as the rebase-agent "
        "commands run (rebase_agent.commands.frozen_startup_heap); collected: a program that "
        "does not",
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="uvloop" if event_loop_options() else "asyncio",
        help="the client's event loop: asyncio's own, or uvloop's (pip install uvloop); default: "
        "the commands' (rebase_agent.commands.event_loop_options)",
    )
    parser.add_argument(
        "--http-judge",
        action="store_true",
        help="add rows that score with a JudgeScorer over HTTP (batch_size 64 and 1)",
    )
    parser.add_argument("--problems", type=int, default=16, help="routing: problems at once")
    parser.add_argument("--words", type=int, default=400, help="routing: prompt words")
    parser.add_argument("--per-token-ms", type=float, default=0.2, help="routing: prefill cost")
    parser.add_argument("--cache-blocks", type=int, default=100_000, help="routing: per replica")
    parser.add_argument("--step-words", type=int, default=40, help="routing: words per step")
    args = parser.parse_args()
    BACKEND_OPTIONS["use_uvloop"] = args.loop == "uvloop"
    print(f"heap: {args.heap}; loop: {args.loop}")
    with frozen_startup_heap() if args.heap == "frozen" else nullcontext():
        if args.routing:
            routing(
                args.problems, args.words, args.per_token_ms, args.cache_blocks, args.step_words
            )
        else:
            table([int(k) for k in args.only.split(",")], args.compare, args.http_judge)


if __name__ == "__main__":
    main()
