"""Add the counted problem prompt (``problem_prompt_tokens``) to results written without it.

Rows written by ``rebase-agent eval`` before the provider could count a problem's prompt
(:class:`~rebase_agent.protocols.PromptCounter`) leave ``rebase-agent report`` to estimate it
from the prompt tokens the first requests reported, which the local llama.cpp provider gives
net of its prefix cache: a lower bound, often a small fraction of the prompt. This script
counts each problem's prompt with the ``llama`` backend built from the same options as the run
(so the same template) and writes the count into every row of that problem, leaving rows that
already have one alone. The file is rewritten in place (plain or ``.gz``), through a temporary
file, so an interrupted run leaves it as it was.

Usage::

    python benchmarks/count_prompts.py benchmarks/results/gsm8k-gemma3-270m/results.jsonl.gz
    python benchmarks/count_prompts.py RESULTS --option template="$(python -c ...)"
    python benchmarks/count_prompts.py RESULTS --arithmetic   # the chains' few-shot template
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import anyio

from rebase_agent.backends import parse_options


def read_raw(path: Path) -> list[dict[str, Any]]:
    """Every row of a results file (plain or ``.gz``) as parsed JSON, untouched."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_raw(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite ``path`` with ``rows`` through a temporary file (an interruption leaves it)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(tmp, "wt", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def _counts(questions: list[str], options: dict[str, str]) -> dict[str, int]:
    from providers.llamacpp.backend import llama_backend

    provider, scorer = llama_backend(**options)
    try:
        counts: dict[str, int] = {}
        for question in questions:
            count = await provider.count_prompt_tokens(question)
            if count is None:
                raise SystemExit("the backend's provider cannot count prompt tokens")
            counts[question] = count
        return counts
    finally:
        await provider.aclose()
        await scorer.aclose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="a results file (.jsonl or .jsonl.gz)")
    p.add_argument(
        "--option", action="append", default=[], help="llama backend option KEY=VALUE, as run"
    )
    p.add_argument(
        "--arithmetic",
        action="store_true",
        help="the few-shot template of benchmarks/arithmetic_chains.py (its llamacpp-local runs)",
    )
    args = p.parse_args()
    options = parse_options(args.option)
    if args.arithmetic:
        from rebase_agent.evaluation.arithmetic import FEW_SHOT_TEMPLATE

        options.setdefault("template", FEW_SHOT_TEMPLATE)
    rows = read_raw(args.results)
    missing = sorted({r["question"] for r in rows if r.get("problem_prompt_tokens") is None})
    counts = anyio.run(_counts, missing, options) if missing else {}
    for row in rows:
        if row.get("problem_prompt_tokens") is None:
            row["problem_prompt_tokens"] = counts[row["question"]]
    if counts:
        write_raw(args.results, rows)
    values = sorted(counts.values())
    spread = f", {values[0]} to {values[-1]} tokens" if values else ""
    print(f"{args.results}: counted {len(counts)} problem prompt(s){spread}; {len(rows)} rows")


if __name__ == "__main__":
    main()
