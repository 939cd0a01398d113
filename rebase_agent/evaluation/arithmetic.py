"""A controlled task: arithmetic chains, with a process verifier that knows the problem.

A chain reads ``"Start with 4. Add 3. Multiply by 2. Subtract 5."``; a solution states one
operation per line, ``"Step 1: 4 + 3 = 7"``, and ends with ``"The answer is 9"``. Steps are
lines, so searches use ``step_delimiters=("\\n",)`` (see :func:`arithmetic_config`).

:class:`ArithmeticVerifier` is a :class:`~rebase_agent.Scorer`: a step scores 1 when it applies
the problem's next operation to the correct result so far and computes it right, and the final
line scores 1 when it states the right result after every operation; anything else scores 0. It
reads the problem from the request's text, so it needs no state; the same shape serves any
tool-checked reasoning. :class:`SimulatedArithmeticPolicy` is a seeded, model-free policy that
gets each step right with a set probability, for demos and tests.

Example::

    chains = generate_chains(8, steps=3, seed=0)
    write_chains(chains, "chains.jsonl")   # then: rebase-agent eval chains.jsonl --format jsonl
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from rebase_agent.config import RebaseConfig
from rebase_agent.protocols import Provider, Scorer, ScoreRequest, StepCompletion, StepRequest
from rebase_agent.seeds import stable_seed

__all__ = (
    "FEW_SHOT_TEMPLATE",
    "ArithmeticChain",
    "ArithmeticVerifier",
    "Operation",
    "SimulatedArithmeticPolicy",
    "arithmetic_config",
    "generate_chains",
    "parse_chain",
    "simulated_backend",
    "write_chains",
)

Op = Literal["+", "-", "*"]
_WORDS: dict[Op, str] = {"+": "Add", "-": "Subtract", "*": "Multiply by"}
_SYMBOLS: dict[str, Op] = {"+": "+", "-": "-", "*": "*", "x": "*", "×": "*", "\u2212": "-"}
_START = re.compile(r"Start with (-?\d+)\.")
_OP = re.compile(r"(Add|Subtract|Multiply by) (\d+)\.")
_STEP = re.compile(r"Step\s*\d+\s*:\s*(-?\d+)\s*([-+*x×\u2212])\s*(-?\d+)\s*=\s*(-?\d+)")
_ANSWER = re.compile(r"answer is\s*:?\s*\$?(-?\d+)", re.IGNORECASE)

FEW_SHOT_TEMPLATE = (
    "Start with 2. Add 5. Multiply by 3.\n"
    "Step 1: 2 + 5 = 7\n"
    "Step 2: 7 * 3 = 21\n"
    "The answer is 21\n\n"
    "Start with 9. Subtract 4. Multiply by 2. Add 1.\n"
    "Step 1: 9 - 4 = 5\n"
    "Step 2: 5 * 2 = 10\n"
    "Step 3: 10 + 1 = 11\n"
    "The answer is 11\n\n"
    "{problem}\n{solution}"
)
"""Two worked examples, then the problem: a completion template (``{problem}``, ``{solution}``)
for base models, e.g. the llama.cpp provider's ``template`` option."""


class Operation(BaseModel):
    """One operation of a chain."""

    op: Op
    operand: int

    def apply(self, value: int) -> int:
        """The result of applying this operation to ``value``."""
        if self.op == "+":
            return value + self.operand
        if self.op == "-":
            return value - self.operand
        return value * self.operand


class ArithmeticChain(BaseModel):
    """A start value and operations; the question text and the answer follow from them."""

    id: str
    start: int
    ops: list[Operation]

    @property
    def question(self) -> str:
        """``"Start with 4. Add 3. Multiply by 2."``"""
        parts = [f"Start with {self.start}."]
        parts += [f"{_WORDS[o.op]} {o.operand}." for o in self.ops]
        return " ".join(parts)

    def results(self) -> list[int]:
        """The running value after each operation."""
        out, value = [], self.start
        for o in self.ops:
            value = o.apply(value)
            out.append(value)
        return out

    @property
    def answer(self) -> int:
        """The final value."""
        return self.results()[-1] if self.ops else self.start


def generate_chains(
    count: int, *, steps: int = 3, seed: int = 0, max_operand: int = 9
) -> list[ArithmeticChain]:
    """``count`` chains of ``steps`` operations, the same for the same arguments.

    Operands are 1..``max_operand``; multiplications are by 2..5 and subtractions never go
    below zero, so every value stays small and non-negative.
    """
    rng = random.Random(seed)
    chains = []
    for i in range(count):
        value = rng.randint(1, 9)
        start, ops = value, []
        for _ in range(steps):
            op: Op = rng.choice(["+", "-", "*"])
            operand = rng.randint(2, 5) if op == "*" else rng.randint(1, max_operand)
            if op == "-" and operand > value:
                op = "+"
            ops.append(Operation(op=op, operand=operand))
            value = ops[-1].apply(value)
        chains.append(ArithmeticChain(id=f"chain-{seed}-{i}", start=start, ops=ops))
    return chains


def write_chains(chains: Sequence[ArithmeticChain], path: str | Path) -> None:
    """Write chains as JSONL with ``id``, ``question`` and ``answer`` fields."""
    with open(path, "w", encoding="utf-8") as fh:
        for c in chains:
            row = {"id": c.id, "question": c.question, "answer": str(c.answer)}
            fh.write(json.dumps(row) + "\n")


def parse_chain(question: str) -> ArithmeticChain | None:
    """The chain a question states, or ``None`` when it is not one (the last chain in the
    text wins, so a prompt with worked examples before the problem works too)."""
    starts = list(_START.finditer(question))
    if not starts:
        return None
    start = starts[-1]
    ops = [
        Operation(op=next(k for k, w in _WORDS.items() if w == m.group(1)), operand=int(m[2]))
        for m in _OP.finditer(question, start.end())
    ]
    return ArithmeticChain(id="parsed", start=int(start.group(1)), ops=ops)


def _score_path(chain: ArithmeticChain, steps: Sequence[str]) -> list[float]:
    """One score per step: 1 when every statement in it is right, else 0."""
    expected = chain.results()
    done, value = 0, chain.start
    scores: list[float] = []
    for step in steps:
        ok, stated = True, 0
        for line in step.splitlines():
            if m := _STEP.search(line):
                stated += 1
                a, sym, b, c = int(m[1]), _SYMBOLS[m[2]], int(m[3]), int(m[4])
                nxt = chain.ops[done] if done < len(chain.ops) else None
                ok = ok and nxt is not None and (sym, b) == (nxt.op, nxt.operand)
                ok = ok and a == value and c == expected[done]
                if nxt is not None:
                    value = expected[done]
                done += 1
            elif m := _ANSWER.search(line):
                stated += 1
                ok = ok and done == len(chain.ops) and int(m[1]) == chain.answer
        scores.append(1.0 if ok and stated else 0.0)
    return scores


class ArithmeticVerifier:
    """Process verifier for arithmetic chains (a :class:`~rebase_agent.Scorer`).

    A step scores 1 when each statement in it is right: ``Step k: a op b = c`` must apply the
    problem's next operation (``op b``) to the correct result so far (``a``) and get ``c``
    right; ``The answer is x`` must come after every operation with the right ``x``. A step
    with no statement, or any wrong one, scores 0, and so does every step of a text that is
    not a chain. Since ``a`` must be the correct value, every step after a mistake scores 0.
    """

    async def score(self, request: ScoreRequest) -> list[list[float]]:
        """One score per step of every solution."""
        chain = parse_chain(request.problem)
        if chain is None:
            return [[0.0] * len(steps) for steps in request.solutions]
        return [_score_path(chain, steps) for steps in request.solutions]


class SimulatedArithmeticPolicy:
    """A model-free policy for chains that gets each step right with probability ``accuracy``.

    A wrong step is off by 1 to 3; later steps continue from the stated (possibly wrong)
    value, and the last line states it as the answer. Draws are seeded by the request, so a
    seeded search is reproducible.
    """

    def __init__(self, *, accuracy: float = 0.5, seed: int = 0) -> None:
        self.accuracy = accuracy
        self.seed = seed

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        """``request.n`` next lines."""
        return [self._line(request, i) for i in range(request.n)]

    def _line(self, request: StepRequest, index: int) -> StepCompletion:
        chain = parse_chain(request.problem)
        rng = random.Random(
            stable_seed(self.seed, request.seed, request.problem, "".join(request.steps), index)
        )
        if chain is None:
            return StepCompletion(text="The answer is 0", finish_reason="eos")
        value, done = chain.start, 0
        for step in request.steps:
            if m := _STEP.search(step):
                value, done = int(m[4]), done + 1
        if done >= len(chain.ops):
            text = f"The answer is {value}"
            return StepCompletion(text=text, finish_reason="eos", completion_tokens=4)
        o = chain.ops[done]
        result = o.apply(value)
        if rng.random() >= self.accuracy:
            result += rng.choice([-3, -2, -1, 1, 2, 3])
        text = f"Step {done + 1}: {value} {o.op} {o.operand} = {result}{request.stop[0]}"
        prompt = len((request.problem + "".join(request.steps)).split()) if index == 0 else 0
        return StepCompletion(
            text=text, finish_reason="step", prompt_tokens=prompt, completion_tokens=8
        )


def arithmetic_config(steps: int = 3, **fields: object) -> RebaseConfig:
    """A search config for chains of ``steps`` operations: one line per step, room for the
    answer line, short steps and normalised-string voting; ``fields`` override."""
    base: dict[str, object] = {
        "step_delimiters": ("\n",),
        "max_step_tokens": 32,
        "max_depth": steps + 2,
        "answer_equivalence": "normalized",
    }
    return RebaseConfig.model_validate(base | fields)


def simulated_backend(**options: str) -> tuple[Provider, Scorer]:
    """Backend factory (``--backend arithmetic-sim``): the simulated policy and the verifier.

    Options: ``accuracy`` (default 0.35) and ``seed`` (default 0).
    """
    policy = SimulatedArithmeticPolicy(
        accuracy=float(options.get("accuracy", "0.35")), seed=int(options.get("seed", "0"))
    )
    return policy, ArithmeticVerifier()
