from __future__ import annotations

from pathlib import Path

import pytest

from rebase_agent import Scorer, ScoreRequest, solve
from rebase_agent.evaluation.arithmetic import (
    FEW_SHOT_TEMPLATE,
    ArithmeticVerifier,
    SimulatedArithmeticPolicy,
    arithmetic_config,
    generate_chains,
    parse_chain,
    write_chains,
)
from rebase_agent.evaluation.datasets import DatasetSpec, load_dataset

Q = "Start with 4. Add 3. Multiply by 2. Subtract 5."


def test_chains_are_seeded_and_state_their_answer(tmp_path: Path) -> None:
    chains = generate_chains(20, steps=3, seed=7)
    assert chains == generate_chains(20, steps=3, seed=7) != generate_chains(20, steps=3, seed=8)
    for chain in chains:
        assert len(chain.ops) == 3 and min([chain.start, *chain.results()]) >= 0
        assert parse_chain(chain.question) is not None
        assert parse_chain(chain.question).answer == chain.answer  # type: ignore[union-attr]
    parsed = parse_chain(Q)
    assert parsed is not None and parsed.results() == [7, 14, 9] and parsed.answer == 9
    write_chains(chains, tmp_path / "c.jsonl")
    data = load_dataset(DatasetSpec(source=str(tmp_path / "c.jsonl"), fields={"id": "id"}))
    assert data.problems[0].gold_answer == str(chains[0].answer)
    assert data.problems[0].id == chains[0].id


async def _scores(steps: list[str], problem: str = Q) -> list[float]:
    verifier = ArithmeticVerifier()
    assert isinstance(verifier, Scorer)
    out = await verifier.score(ScoreRequest(problem=problem, solutions=(tuple(steps),)))
    return out[0]


@pytest.mark.anyio
async def test_verifier_scores_hand_written_steps() -> None:
    right = [
        "Step 1: 4 + 3 = 7\n",
        "Step 2: 7 * 2 = 14\n",
        "Step 3: 14 - 5 = 9\n",
        "The answer is 9",
    ]
    assert await _scores(right) == [1.0, 1.0, 1.0, 1.0]
    assert await _scores(["Step 1: 4 + 3 = 8\n"]) == [0.0]  # miscomputed
    assert await _scores(["Step 1: 4 * 3 = 12\n"]) == [0.0]  # wrong operation
    assert await _scores(["Step 1: 4 + 2 = 6\n"]) == [0.0]  # wrong operand
    assert await _scores(["Step 1: 5 + 3 = 8\n"]) == [0.0]  # not the previous result
    # after a mistake, carrying on from the wrong value is not the correct next step
    assert await _scores(["Step 1: 4 + 3 = 8\n", "Step 2: 8 * 2 = 16\n"]) == [0.0, 0.0]
    assert await _scores(["Step 1: 4 + 3 = 7\n", "Step 2: 7 - 5 = 2\n"]) == [1.0, 0.0]  # skipped
    assert await _scores([*right[:2], "The answer is 14"]) == [1.0, 1.0, 0.0]  # too early
    assert await _scores([*right[:3], "The answer is 10"]) == [1.0, 1.0, 1.0, 0.0]
    assert await _scores(["Let me think.\n", "Step 1: 4 x 3 = 7\n"]) == [0.0, 0.0]
    assert await _scores(["Step 1: 4 × 3 = 7\n"], "Start with 4. Add 3.") == [0.0]
    assert await _scores(["Step 1: 4+3=7 so\n", "The answer is: 7."], "Start with 4. Add 3.") == [
        1.0,
        1.0,
    ]
    # a prompt with worked examples before the problem: the last chain is the problem
    assert await _scores(right, FEW_SHOT_TEMPLATE.format(problem=Q, solution="")) == [1.0] * 4
    assert await _scores(["Step 1: 1 + 1 = 2\n"], "What is 1 + 1?") == [0.0]


def test_few_shot_template_keeps_the_format() -> None:
    prompt = FEW_SHOT_TEMPLATE.format(problem=Q, solution="Step 1: 4 + 3 = 7\n")
    assert prompt.endswith(Q + "\nStep 1: 4 + 3 = 7\n")
    assert prompt.count("The answer is") == 2


@pytest.mark.anyio
async def test_rebase_with_the_verifier_finds_the_answer_a_weak_policy_misses() -> None:
    policy = SimulatedArithmeticPolicy(accuracy=0.4, seed=1)
    config = arithmetic_config(steps=3, budget=16, seed=0)
    result = await solve(Q, provider=policy, scorer=ArithmeticVerifier(), config=config)
    assert result.answer == "9"
    assert result.candidates and all(
        c.steps[-1].startswith("The answer is") for c in result.candidates
    )
