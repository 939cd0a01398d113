"""HTTP overhead of REBASE over the OpenAI-compatible provider, on the fake test server.

The policy server answers every request after a fixed latency L; the PRM (``/pooling``) answers
at once unless ``--prm-latency`` is set, scoring a node's first sample higher than the others so
that REBASE gives nodes uneven widths. REBASE runs with budget 64 for 8 depths (7 steps, then
every path ends). Printed, with and without ``n`` support on the server:

- wall time / (depths × L): 1.0 means each depth costs one round trip, whatever its width;
- policy requests per depth: with ``n``, one per expanded node; without, one per child.

Run from the repository root::

    python benchmarks/http_overhead.py --latency 0.05
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the test server is in tests/

from providers.openai_compat import OpenAIProvider, QwenPRMScorer
from rebase_agent import RebaseConfig, solve
from tests.providers.openai_fake_server import FakeApp, Flavor, Sample, serve

DEPTHS = 8


def script(prompt: str, i: int) -> Sample:
    """Seven steps, then an answer, whatever was sampled."""
    depth = prompt.count("Step ")
    if depth >= DEPTHS - 1:
        return Sample("The answer is \\boxed{4}.", "eos")
    return Sample(f"Step {depth + 1}: choice {i}.")


async def run(latency: float, prm_latency: float, supports_n: bool, concurrency: int) -> None:
    """One REBASE solve; prints the overhead ratio and the requests per depth."""
    policy = FakeApp(Flavor(stop_style="vllm", latency_s=latency, supports_n=supports_n))
    policy.script = script
    prm = FakeApp(Flavor(latency_s=prm_latency))
    prm.pool_score = lambda step: 0.9 if "choice 0" in step else 0.5  # uneven widths
    async with (
        serve(policy) as policy_url,
        serve(prm) as prm_url,
        OpenAIProvider(
            "policy",
            policy_url,
            backend="vllm",
            max_concurrency=concurrency,
            supports_n=None,
        ) as provider,
        QwenPRMScorer("prm", prm_url, max_concurrency=concurrency) as scorer,
    ):
        start = time.perf_counter()
        result = await solve(
            "What is 2+2?",
            provider=provider,
            scorer=scorer,
            config=RebaseConfig(budget=64, max_depth=DEPTHS, seed=0),
        )
        wall = time.perf_counter() - start
    depths = len(result.usage.depths) or DEPTHS
    ideal = depths * (latency + prm_latency)
    per_depth = len(policy.requests) / depths
    label = "with n   " if supports_n else "without n"
    print(
        f"{label}: wall {wall:.3f} s, wall/(depths x L) = {wall / ideal:.2f}, "
        f"policy requests/depth = {per_depth:.1f}, PRM requests/depth = "
        f"{len(prm.requests) / depths:.1f}, candidates = {len(result.candidates)}, "
        f"answer = {result.answer}"
    )


def main() -> None:
    """Parse the arguments and run both cases."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="policy latency L (s)")
    parser.add_argument("--prm-latency", type=float, default=0.0, help="PRM latency (s)")
    parser.add_argument("--max-concurrency", type=int, default=64, help="per endpoint")
    args = parser.parse_args()
    for supports_n in (True, False):
        anyio.run(run, args.latency, args.prm_latency, supports_n, args.max_concurrency)


if __name__ == "__main__":
    main()
