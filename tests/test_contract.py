"""One contract, every strategy: what a search asks of its provider and scorer, and what it
reports back about them."""

from __future__ import annotations

from functools import partial

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from rebase_agent import RebaseConfig, SearchResult, StepCompletion, StepRequest, solve
from rebase_agent.testing import ScriptedProvider, ScriptedScorer

pytestmark = pytest.mark.anyio

STRATEGIES = ["rebase", "sampling", "beam", "mcts", "dvts"]
CONFIG = RebaseConfig(budget=8, beam_width=4, seed=1, mcts_batch_size=4)


class ServingProvider(ScriptedProvider):
    """A scripted policy that tallies every completion and token it served."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.served = 0
        self.served_prompt = 0
        self.served_completion = 0

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        out = await super().generate(request)
        self.served += len(out)
        self.served_prompt += sum(c.prompt_tokens for c in out)
        self.served_completion += sum(c.completion_tokens for c in out)
        return out


async def run(strategy: str, provider: ScriptedProvider, scorer: ScriptedScorer) -> SearchResult:
    return await solve(
        "What is 6 * 7?",
        provider=provider,
        scorer=scorer,
        config=CONFIG,
        strategy=strategy,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_every_completion_requested_becomes_a_node(strategy: str) -> None:
    provider = ServingProvider(depth=4)
    result = await run(strategy, provider, ScriptedScorer())
    assert sum(r.n for r in provider.requests) == provider.served == len(result.nodes) - 1
    if strategy != "mcts":  # (an MCTS rollout's first step leaves its start's width alone)
        # Each expansion asked for exactly the width it was given.
        widths = sorted(n.width for n in result.nodes if n.width > 0)
        assert widths == sorted(r.n for r in provider.requests)


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_one_score_per_step_of_every_scored_path(strategy: str) -> None:
    scorer = ScriptedScorer()
    result = await run(strategy, ServingProvider(depth=4), scorer)
    scored = [steps for request in scorer.requests for steps in request.solutions]
    assert len(scored) == len(result.nodes) - 1 == result.usage.scored_solutions
    for node in result.nodes[1:]:
        assert len(node.step_scores) == node.depth


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_usage_equals_what_the_provider_and_scorer_served(strategy: str) -> None:
    provider, scorer = ServingProvider(depth=4), ScriptedScorer()
    result = await run(strategy, provider, scorer)
    assert result.usage.provider_requests == len(provider.requests)
    assert result.usage.prompt_tokens == provider.served_prompt > 0
    assert result.usage.completion_tokens == provider.served_completion > 0
    assert result.usage.scorer_calls == len(scorer.requests)


class HoldsDepth(ScriptedProvider):
    """Answers depth 0 at once; holds every deeper request until cancelled."""

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        self.gate = None if request.depth == 0 else anyio.Event()
        return await super().generate(request)


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_cancellation_reaches_every_provider_request_in_flight(strategy: str) -> None:
    provider = HoldsDepth(depth=4)
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(run, strategy, provider, ScriptedScorer()))
        await wait_all_tasks_blocked()
        held = provider.in_flight
        assert held >= 1
        tg.cancel_scope.cancel()
    assert provider.cancelled == held and provider.in_flight == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_cancellation_reaches_every_scorer_call_in_flight(strategy: str) -> None:
    scorer = ScriptedScorer(gate=anyio.Event())  # never opens
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(run, strategy, ScriptedProvider(depth=4), scorer))
        await wait_all_tasks_blocked()
        held = scorer.in_flight
        assert held == 1  # the root's children, scored in one call
        tg.cancel_scope.cancel()
    assert scorer.cancelled == held and scorer.in_flight == 0
