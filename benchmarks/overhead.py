"""Coordinator overhead: how close REBASE's wall time comes to the latency it cannot avoid.

An in-process provider sleeps a fixed latency L per request (the scorer answers at once), so an
ideal coordinator finishes a search of D depths in D × L: every depth's requests overlap
completely and the coordinator itself costs nothing. This prints, for REBASE at budget 64 over
8 depths:

* ``wall / (D × L)``: 1.0 is ideal; the excess is coordination (allocation, pydantic models,
  task groups, scoring round trips, voting);
* the coordinator's CPU time per tree node (``time.process_time``, which the sleeping provider
  does not use), the cost that remains when requests are fast.

Usage::

    python benchmarks/overhead.py                     # L = 50 ms and 5 ms, 5 runs each
    python benchmarks/overhead.py --latency 0.02 --runs 10 --problems 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import anyio

from rebase_agent import RebaseConfig, RebaseSearch
from rebase_agent.testing import ScriptedProvider, ScriptedScorer

DEPTHS = 8
BUDGET = 64


async def measure(latency: float, problems: int) -> tuple[float, float, int]:
    """One run: (wall / ideal, CPU seconds per node, nodes)."""
    provider = ScriptedProvider(depth=DEPTHS, answers=["42", "41", "40"], latency=latency)
    scorer = ScriptedScorer(rules={"42": 0.9})
    config = RebaseConfig(budget=BUDGET, max_depth=DEPTHS, seed=0, max_concurrent_requests=10_000)
    search = RebaseSearch(provider, scorer, config)
    cpu, wall = time.process_time(), time.perf_counter()
    results = await search.solve_many(
        [f"problem {i}" for i in range(problems)], max_concurrent=problems
    )
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    nodes = sum(len(r.nodes) for r in results)
    depths = {len(r.usage.depths) for r in results}
    assert depths == {DEPTHS}, f"expected {DEPTHS} depths, got {depths}"
    return wall / (DEPTHS * latency), cpu / nodes, nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, action="append", help="seconds per request")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--problems", type=int, default=1, help="problems solved concurrently")
    args = parser.parse_args()
    print(f"REBASE, budget {BUDGET}, {DEPTHS} depths, {args.problems} problem(s) at once")
    print(f"{'L (ms)':>7} {'wall/ideal':>11} {'min':>6} {'CPU us/node':>12} {'nodes':>6}")
    for latency in args.latency or [0.05, 0.005]:
        anyio.run(measure, latency, args.problems)  # warm-up: imports, caches
        runs = [anyio.run(measure, latency, args.problems) for _ in range(args.runs)]
        ratios = [r[0] for r in runs]
        cpu = statistics.median(r[1] for r in runs) * 1e6
        print(
            f"{latency * 1e3:7.1f} {statistics.median(ratios):11.3f} {min(ratios):6.3f} "
            f"{cpu:12.1f} {runs[0][2]:6d}"
        )


if __name__ == "__main__":
    main()
