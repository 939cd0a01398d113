from __future__ import annotations

import math

import pytest

from rebase_agent import RebaseConfig, SearchResult, StepRequest, solve
from rebase_agent.expansion import TreeExpander
from rebase_agent.strategies.mcts import Mcts, uct_score
from rebase_agent.testing import FunctionProvider, ScriptedProvider, ScriptedScorer
from rebase_agent.tree import Node, SearchTree

pytestmark = pytest.mark.anyio


def hand_made_tree() -> tuple[SearchTree, list[Node]]:
    tree = SearchTree()
    root = tree.root
    root.visits = 10
    children = []
    for node_id, (visits, value_sum) in enumerate([(6, 4.2), (3, 1.5), (1, 0.4)], start=1):
        child = tree.add_child(root, node_id, f"c{node_id}\n\n")
        child.visits, child.value_sum = visits, value_sum
        children.append(child)
    return tree, children


def expander_for(tree: SearchTree, **config: object) -> TreeExpander:
    expander = TreeExpander(
        "p",
        provider=ScriptedProvider(),
        scorer=ScriptedScorer(),
        config=RebaseConfig(**config),  # type: ignore[arg-type]
        extract_answer=lambda text: None,
        provider_limiter=None,  # type: ignore[arg-type]
        scorer_limiter=None,  # type: ignore[arg-type]
    )
    expander.tree = tree
    return expander


@pytest.mark.parametrize("exploration", [0.0, 1.0, 3.0])
def test_uct_picks_the_child_the_formula_says(exploration: float) -> None:
    tree, children = hand_made_tree()
    by_hand = [
        q + exploration * math.sqrt(math.log(10) / n) for q, n in [(0.7, 6), (0.5, 3), (0.4, 1)]
    ]
    assert [uct_score(c, 10, exploration) for c in children] == pytest.approx(by_hand)
    expected = children[by_hand.index(max(by_hand))]
    (leaf,) = Mcts().select(tree.root, 1, expander_for(tree, mcts_exploration=exploration))
    assert leaf is expected
    # C=0 exploits (child 1, Q=0.7); C=1 and 3 explore the rarely visited child 3.
    assert leaf.id == (1 if exploration == 0.0 else 3)


def test_virtual_loss_spreads_a_batch_over_different_leaves() -> None:
    tree, children = hand_made_tree()
    for child in children:  # equal statistics: without virtual loss all picks would coincide
        child.visits, child.value_sum = 2, 1.0
    leaves = Mcts().select(tree.root, 3, expander_for(tree))
    assert sorted(leaf.id for leaf in leaves) == [1, 2, 3]
    # Each pending path holds one visit of value 0 until its result is backed up.
    assert tree.root.visits == 10 + 3 and [c.visits for c in children] == [3, 3, 3]


async def test_backed_up_values_are_running_means() -> None:
    config = RebaseConfig(
        budget=4, mcts_expansions=6, mcts_batch_size=1, mcts_rollout=False, seed=1
    )
    result = await solve(
        "p",
        provider=ScriptedProvider(depth=5),
        scorer=ScriptedScorer(),
        config=config,
        strategy="mcts",
    )
    nodes = {n.id: n for n in result.nodes}
    children: dict[int, list[int]] = {}
    for n in result.nodes:
        if n.parent is not None:
            children.setdefault(n.parent, []).append(n.id)
    expanded = [n for n in result.nodes if n.width > 0]
    assert len(expanded) == 6 and result.usage.provider_requests == 6
    # Without rollouts, an expansion backs up its best new child's reward along the path; a
    # node's value is the mean of its own PRM value (if any) and every value backed up through it.
    backups: dict[int, list[float]] = {
        n.id: ([n.reward] if n.parent is not None else []) for n in result.nodes
    }
    for leaf in sorted(expanded, key=lambda n: n.id):
        value = max(nodes[c].reward for c in children[leaf.id])
        walk: int | None = leaf.id
        while walk is not None:
            backups[walk].append(value)
            walk = nodes[walk].parent
    for node in result.nodes:
        if backups[node.id]:
            assert node.visits == len(backups[node.id])
            assert node.value == pytest.approx(sum(backups[node.id]) / len(backups[node.id]))
    assert result.nodes[0].visits == 6


async def test_rollouts_finish_solutions_and_their_tokens_count() -> None:
    config = RebaseConfig(budget=3, mcts_root_children=2, mcts_batch_size=1, seed=2)
    provider = ScriptedProvider(depth=4)
    result = await solve(
        "p", provider=provider, scorer=ScriptedScorer(), config=config, strategy="mcts"
    )
    rollout_nodes = [n for n in result.nodes if n.rollout]
    assert rollout_nodes, "the paper's MCTS rolls out"
    tree_expansions = sum(n.width > 0 and not n.rollout for n in result.nodes)
    assert tree_expansions == 3
    # Every request, rollouts included, is in the usage; rollouts are not expansions.
    assert result.usage.provider_requests == len(provider.requests) > tree_expansions
    assert result.usage.completion_tokens == sum(n.completion_tokens for n in result.nodes)
    assert any(result.nodes[c.node_id].rollout for c in result.candidates)
    for candidate in result.candidates:
        assert candidate.steps[-1].startswith("Step 4: The answer is")


async def test_token_budget_stops_the_search() -> None:
    config = RebaseConfig(budget=50, mcts_token_budget=40, mcts_batch_size=1)
    result = await solve(
        "p",
        provider=ScriptedProvider(depth=6),
        scorer=ScriptedScorer(),
        config=config,
        strategy="mcts",
    )
    assert result.stopped == "token_budget"
    assert 40 <= result.usage.completion_tokens < 40 + 60


async def test_unfinished_paths_never_vote() -> None:
    def never_done(request: StepRequest) -> list[str]:
        return [f"thinking {request.depth}.\n\n"] * request.n

    config = RebaseConfig(budget=8, max_depth=3, mcts_batch_size=2)
    result = await solve(
        "p",
        provider=FunctionProvider(never_done),
        scorer=ScriptedScorer(),
        config=config,
        strategy="mcts",
    )
    assert result.candidates == [] and result.answer is None and result.unfinished > 0
    assert all(n.status != "finished" for n in result.nodes)


async def test_batched_mcts_has_a_batch_of_requests_in_flight() -> None:
    provider = ScriptedProvider(depth=6, latency=0.01)
    config = RebaseConfig(budget=16, mcts_batch_size=4, mcts_rollout=False)
    result = await solve(
        "p", provider=provider, scorer=ScriptedScorer(), config=config, strategy="mcts"
    )
    assert provider.max_in_flight == 4
    assert SearchResult.model_validate_json(result.model_dump_json()) == result


async def test_a_failed_expansion_is_skipped_and_the_search_goes_on() -> None:
    from rebase_agent import ProviderError

    def steps(request: StepRequest) -> list[str]:
        if request.depth == 1 and request.steps[0].startswith("x0"):
            raise ProviderError("flaky")
        if request.depth == 0:
            return [f"x{i}\n\n" for i in range(request.n)]
        return ["The answer is 5."] * request.n

    config = RebaseConfig(budget=6, mcts_batch_size=2, mcts_rollout=False)
    result = await solve(
        "p",
        provider=FunctionProvider(steps),
        scorer=ScriptedScorer(),
        config=config,
        strategy="mcts",
    )
    assert result.usage.failed_expansions >= 1
    assert any(n.status == "failed" and n.step.startswith("x0") for n in result.nodes)
    assert result.answer == "5"


def seeded_steps(delays: dict[int | None, float]) -> FunctionProvider:
    """Steps drawn from the request's seed; each request sleeps ``delays[seed]`` (or a hash of
    it), so two runs can answer the same requests in different orders."""
    import anyio

    async def steps(request: StepRequest) -> list[str]:
        await anyio.sleep(delays.get(request.seed, 0.0))
        out = []
        for i in range(request.n):
            value = ((request.seed or 0) * 31 + i) % 97
            if request.depth >= 2 and value % 3 == 0:
                out.append(f"The answer is {value % 5}.")
            else:
                out.append(f"step {value}\n\n")
        return out

    return FunctionProvider(steps)


class ReorderingDelays(dict[int | None, float]):
    """A delay for every seed, from a hash that ``flip`` turns around."""

    def __init__(self, flip: bool) -> None:
        super().__init__()
        self.flip = flip

    def get(self, key: int | None, default: float = 0.0) -> float:  # type: ignore[override]
        rank = ((key or 0) * 2654435761) % 7
        return 0.001 * (6 - rank if self.flip else rank)


async def test_seeded_mcts_does_not_depend_on_the_order_responses_arrive_in() -> None:
    config = RebaseConfig(budget=12, mcts_batch_size=4, max_depth=5, seed=5)

    async def run(flip: bool) -> list[tuple[int, int | None, str, bool]]:
        result = await solve(
            "p",
            provider=seeded_steps(ReorderingDelays(flip)),
            scorer=ScriptedScorer(),
            config=config,
            strategy="mcts",
        )
        return [(n.id, n.parent, n.step, n.rollout) for n in result.nodes]

    first, second = await run(False), await run(True)
    assert any(rollout for *_, rollout in first), "the batch rolled out concurrently"
    assert first == second


async def test_a_rollouts_value_is_backed_up_into_the_child_it_started_from() -> None:
    def steps(request: StepRequest) -> list[str]:
        if request.depth == 0:
            return ["low\n\n", "best\n\n", "mid\n\n", "bad\n\n"]
        if request.depth < 3:
            return ["rolling\n\n"]
        return ["The answer is 1."]

    scorer = ScriptedScorer(
        rules={"low": 0.2, "best": 0.6, "mid": 0.4, "bad": 0.1, "roll": 0.5, "answer": 1.0}
    )
    config = RebaseConfig(budget=1, mcts_expansions=1, mcts_batch_size=1)
    result = await solve(
        "p", provider=FunctionProvider(steps), scorer=scorer, config=config, strategy="mcts"
    )
    by_step = {n.step: n for n in result.nodes if not n.rollout}
    start = by_step["best\n\n"]
    # Its own PRM value (0.6), then the rollout's final reward (1.0).
    assert start.visits == 2 and start.value == pytest.approx((0.6 + 1.0) / 2)
    assert result.nodes[0].visits == 1 and result.nodes[0].value == pytest.approx(1.0)
    assert by_step["low\n\n"].visits == 1 and by_step["low\n\n"].value == pytest.approx(0.2)
    assert [n.step for n in result.nodes if n.rollout][-1] == "The answer is 1."
