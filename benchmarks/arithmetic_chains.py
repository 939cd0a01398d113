"""Controlled experiment: REBASE against sampling at equal budgets on arithmetic chains.

Chains such as ``"Start with 4. Add 3. Multiply by 2. Subtract 5."`` are generated from a seed;
the policy writes one operation per line (``Step 1: 4 + 3 = 7``) and ends with ``The answer is
9``; the process verifier (:class:`rebase_agent.evaluation.ArithmeticVerifier`) scores a step 1
when it applies the problem's next operation to the correct result so far and computes it
right, else 0. Both strategies vote by weighted majority; every budget is run (REBASE) or
sub-sampled from one search at the largest budget (sampling), through ``rebase-agent eval``, and
drawn with ``rebase-agent report``. The commands are printed, and appended to ``commands.sh`` next
to the results before they run (a folder that several runs add to keeps them all, in order).

The policy is any backend: ``arithmetic-sim`` (default; a model-free policy that gets a step
right with probability ``--option accuracy=...``), ``scripted`` (plumbing only: its steps are
not arithmetic, so everything scores 0), or a real model. A real model gets the two-example
few-shot prompt :data:`~rebase_agent.evaluation.arithmetic.FEW_SHOT_TEMPLATE` as its
``template`` option (``--template-option`` renames it, ``--no-template`` drops it).
``llamacpp-local`` is the local llama.cpp provider (``providers.llamacpp``, Gemma 3 270M unless
``--option model=PATH``; ``--option n_threads=N``), registered by this script without the
LLM-judge scorer that the ``llama`` backend entry point (``providers.llamacpp.backend``) also
loads; once that entry point is installed, ``--backend llama`` works too, through
``rebase-agent eval`` alone (the verifier replaces its scorer either way).

Usage::

    python benchmarks/arithmetic_chains.py                       # simulated policy, 8 chains
    python benchmarks/arithmetic_chains.py --backend scripted --problems 4 --budgets 1,4
    python benchmarks/arithmetic_chains.py --backend llamacpp-local --option n_threads=2 \\
        --params 268M --problems 8 --out benchmarks/results/arithmetic-gemma3-270m
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import click

from rebase_agent import Provider, Scorer
from rebase_agent.backends import register_backend
from rebase_agent.cli_eval import eval_command, report_command
from rebase_agent.evaluation.arithmetic import (
    FEW_SHOT_TEMPLATE,
    ArithmeticVerifier,
    generate_chains,
    write_chains,
)


def _local_llama(**options: str) -> tuple[Provider, Scorer]:
    """The llama.cpp policy from ``providers.llamacpp`` (Gemma 3 270M unless ``model=``), for
    when no ``llamacpp`` backend entry point is installed; the verifier replaces its scorer."""
    from providers.llamacpp import LlamaCppProvider, default_model_path

    threads = options.get("n_threads")
    provider = LlamaCppProvider(
        options.get("model") or default_model_path(),
        template=options.get("template"),
        n_threads=int(threads) if threads else None,
    )
    return provider, ArithmeticVerifier()


def _record(log: Path, line: str) -> None:
    """Append ``line`` to the folder's ``commands.sh``."""
    with log.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def _run(command: click.Command, name: str, args: list[str], log: Path) -> None:
    """Run ``rebase-agent NAME ARGS`` in this process, recorded in ``log`` before it starts (so
    a run stopped halfway is recorded too)."""
    line = shlex.join(["rebase-agent", name, *args])
    _record(log, line)
    print(f"$ {line}\n", flush=True)
    try:
        command.main(args, prog_name=f"rebase-agent {name}", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


def main() -> None:
    """Generate the chains, run ``eval`` for the strategies, then ``report``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="arithmetic-sim")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--template-option", default="template")
    parser.add_argument("--no-template", action="store_true")
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="Operations per chain.")
    parser.add_argument("--seed", type=int, default=0, help="Chains and search seed.")
    parser.add_argument("--budgets", default="1,2,4,8,16,32,64")
    parser.add_argument(
        "--strategies",
        default="rebase,sampling",
        help="Comma-separated: rebase, sampling, beam, mcts, dvts (DVTS needs budgets that are "
        "multiples of beam_width, 4). Runs into the same folder add to one results file.",
    )
    parser.add_argument("--balance-temperature", type=float, default=0.2)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--params", default=None, help="Policy parameters, for FLOPs.")
    parser.add_argument("--gguf", default=None, help="Read the parameter count from a GGUF.")
    parser.add_argument("--label", default=None)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="Folder for chains, results, PNG and summary "
        "(default benchmarks/results/arithmetic-BACKEND).",
    )
    ns = parser.parse_args()

    if ns.backend == "llamacpp-local":
        register_backend("llamacpp-local", _local_llama)
    out: Path = ns.out or Path(__file__).parent / "results" / f"arithmetic-{ns.backend}"
    out.mkdir(parents=True, exist_ok=True)
    chains = out / "chains.jsonl"
    write_chains(generate_chains(ns.problems, steps=ns.steps, seed=ns.seed), chains)
    results = out / "results.jsonl"
    options = list(ns.option)
    if not ns.no_template:
        options.append(f"{ns.template_option}={FEW_SHOT_TEMPLATE}")
    log = out / "commands.sh"  # every run into this folder adds its commands, in order
    invoked = shlex.join(["python", "benchmarks/arithmetic_chains.py", *sys.argv[1:]])
    _record(log, f"# {time.strftime('%Y-%m-%d %H:%M')}: {invoked}")
    eval_args = [
        str(chains),
        "--format",
        "jsonl",
        "--field",
        "id=id",
        *[a for name in ns.strategies.split(",") for a in ("--strategy", name)],
        "--budgets",
        ns.budgets,
        "--backend",
        ns.backend,
        *[a for o in options for a in ("--option", o)],
        "--verifier",
        "arithmetic",
        "--set",
        'step_delimiters=["\\n"]',
        "--set",
        f"max_depth={ns.steps + 2}",
        "--set",
        "max_step_tokens=32",
        "--set",
        "answer_equivalence=normalized",
        "--set",
        "aggregation=weighted_majority",
        "--set",
        f"balance_temperature={ns.balance_temperature}",
        "--set",
        f"temperature={ns.temperature}",
        "--seed",
        str(ns.seed),
        "--concurrency",
        str(ns.concurrency),
        "--label",
        ns.label or ns.backend,
        "-o",
        str(results),
    ]
    _run(eval_command, "eval", eval_args, log)
    report_args = [
        str(results),
        "--png",
        str(out / "curve.png"),
        "--json",
        str(out / "summary.json"),
        "--title",
        f"arithmetic chains ({ns.steps} steps), {ns.label or ns.backend}",
    ]
    if ns.gguf:
        report_args += ["--gguf", ns.gguf]
    elif ns.params:
        report_args += ["--params", ns.params]
    _run(report_command, "report", report_args, log)


if __name__ == "__main__":
    main()
