"""Add the calculator's continuations to results written before steps counted them.

A :class:`~rebase_agent.calculator.CalculatorProvider` finishes a step in several requests (one
more after each ``=`` it writes a value for). Trees recorded before steps counted those
continuations (``NodeRecord.continuations``) count one request per expansion, so the report's
cache-less prompt cost (the problem's prompt and the path so far, once per request) leaves them
out. This script reads each step's continuations from its text
(:func:`~rebase_agent.calculator.estimate_continuations`: the first ``max_calls`` ``=`` of a
step, each sending the share of the step before it), writes them into every node that has none,
and recounts each outcome's ``requests`` and ``context_tokens`` from the tree
(:func:`~rebase_agent.evaluation.outcomes.request_costs`, sub-sampled budgets from their first
paths). Only for runs whose provider was the calculator with ``method="stop"`` (the embedded
default's); the file is rewritten in place (plain or ``.gz``), through a temporary file.

Usage::

    python benchmarks/count_continuations.py benchmarks/results/gsm8k-gemma3-270m/results.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from count_prompts import read_raw, write_raw

from rebase_agent.calculator import estimate_continuations
from rebase_agent.evaluation.outcomes import request_costs, subsample_nodes
from rebase_agent.tree import NodeRecord


def backfill(row: dict[str, Any], max_calls: int) -> bool:
    """Add the continuations to ``row``'s nodes that have none and recount its outcomes;
    whether anything changed."""
    raw_nodes = row["result"].get("nodes") or []
    missing = [n for n in raw_nodes if "continuations" not in n and n["parent"] is not None]
    if not missing:
        return False
    before = [NodeRecord.model_validate(n) for n in raw_nodes]
    for outcome in row["outcomes"]:  # the counts eval wrote must be this tree's, as it was
        if outcome.get("requests") is None:
            continue
        keep = subsample_nodes(before, outcome["budget"]) if outcome["subsampled"] else None
        if request_costs(before, keep)[:2] != (outcome["requests"], outcome["context_tokens"]):
            raise SystemExit(
                f"problem {row['problem_id']} ({row['strategy']}, budget {outcome['budget']}): "
                "the outcome's requests are not its tree's; not rewriting"
            )
    for node in missing:
        count, sent = estimate_continuations(
            node["step"], node["completion_tokens"], max_calls=max_calls
        )
        node["continuations"], node["continuation_context_tokens"] = count, sent
    nodes = [NodeRecord.model_validate(n) for n in raw_nodes]
    for outcome in row["outcomes"]:
        if outcome.get("requests") is None:
            continue
        keep = subsample_nodes(nodes, outcome["budget"]) if outcome["subsampled"] else None
        costs = request_costs(nodes, keep)
        outcome["requests"], outcome["context_tokens"] = costs.requests, costs.context_tokens
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="a results file (.jsonl or .jsonl.gz)")
    p.add_argument("--max-calls", type=int, default=4, help="the calculator's max_calls in the run")
    args = p.parse_args()
    rows = read_raw(args.results)
    changed = [row for row in rows if backfill(row, args.max_calls)]
    if changed:
        write_raw(args.results, rows)
    steps = [
        n for row in changed for n in row["result"].get("nodes") or [] if n["parent"] is not None
    ]
    continued = sum(n["continuations"] for n in steps)
    print(
        f"{args.results}: {len(changed)} of {len(rows)} rows recounted; "
        f"{continued} continuations over {len(steps)} steps"
    )


if __name__ == "__main__":
    main()
