"""Quick start: REBASE with your own provider and scorer, in plain Python.

A provider is any object with ``async generate(request) -> list[StepCompletion]``; a scorer is
any object with ``async score(request) -> list[list[float]]``. Here both are toys: the
"model" adds numbers step by step and sometimes slips, and the "PRM" checks each step's sum.

    python examples/quickstart.py
"""

from __future__ import annotations

import random

import anyio

from rebase_agent import RebaseConfig, ScoreRequest, StepCompletion, StepRequest, solve

NUMBERS = [17, 25, 8, 31]
PROBLEM = "Add the numbers " + ", ".join(map(str, NUMBERS)) + " one at a time."


class SloppyAdder:
    """Adds the next number; 30% of the time it gets the sum wrong."""

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        done = len(request.steps)
        total = sum(NUMBERS[:done])
        rng = random.Random(request.seed)  # the search derives a seed for every request
        out = []
        for _ in range(request.n):
            new = total + NUMBERS[done] + rng.choice([0, 0, 0, 0, 0, 0, 0, 1, -1, 10])
            if done + 1 == len(NUMBERS):
                out.append(StepCompletion(text=f"The answer is {new}.", finish_reason="eos"))
            else:
                text = f"{total} + {NUMBERS[done]} = {new}\n\n"
                out.append(StepCompletion(text=text, finish_reason="step"))
        return out


class SumChecker:
    """Scores a step 1.0 if its sum is right given the previous step, else 0.0."""

    async def score(self, request: ScoreRequest) -> list[list[float]]:
        return [
            [self.check(steps[: i + 1]) for i in range(len(steps))] for steps in request.solutions
        ]

    @staticmethod
    def check(steps: tuple[str, ...]) -> float:
        claimed = int(steps[-1].rstrip(".\n").split()[-1])
        previous = 0 if len(steps) == 1 else int(steps[-2].split()[-1])
        return float(claimed == previous + NUMBERS[len(steps) - 1])


async def main() -> None:
    config = RebaseConfig(budget=8, balance_temperature=0.1, seed=7)
    result = await solve(PROBLEM, provider=SloppyAdder(), scorer=SumChecker(), config=config)
    print(f"answer {result.answer} (right: {sum(NUMBERS)})")
    print(f"tree {result.tree_shape()}, votes {[(v.answer, v.count) for v in result.votes]}")


if __name__ == "__main__":
    anyio.run(main)
