"""The expander: the one writer of node status, its rounds, and how a search stops."""

from __future__ import annotations

import ast
import pathlib

import anyio
import pytest

import rebase_agent
from rebase_agent import Provider, RebaseConfig, SearchTimeout, StepRequest, StrategyName, solve
from rebase_agent.expansion import TreeExpander
from rebase_agent.strategies import STRATEGIES
from rebase_agent.testing import FunctionProvider, ScriptedProvider, ScriptedScorer

pytestmark = pytest.mark.anyio

STRATEGY_NAMES: list[StrategyName] = sorted(STRATEGIES)
CONFIG = RebaseConfig(budget=8, beam_width=4, seed=1, mcts_batch_size=4, max_depth=3)


def expander_for(provider: Provider, config: RebaseConfig = CONFIG) -> TreeExpander:
    return TreeExpander(
        "p",
        provider=provider,
        scorer=ScriptedScorer(),
        config=config,
        extract_answer=rebase_agent.extract_answer,
        provider_limiter=anyio.CapacityLimiter(8),
        scorer_limiter=anyio.CapacityLimiter(8),
    )


def test_only_the_expander_assigns_a_node_status() -> None:
    core = pathlib.Path(rebase_agent.__file__).parent
    writers = set()
    for path in core.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            for target in targets:
                elements = target.elts if isinstance(target, ast.Tuple) else [target]
                if any(isinstance(t, ast.Attribute) and t.attr == "status" for t in elements):
                    writers.add(path.relative_to(core).as_posix())
    assert writers == {"expansion.py"}


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
async def test_a_strategy_leaves_no_open_path_behind(strategy: StrategyName) -> None:
    def never_done(request: StepRequest) -> list[str]:
        return [f"thinking {request.depth}.{i}\n\n" for i in range(request.n)]

    expander = expander_for(FunctionProvider(never_done))
    stopped = await STRATEGIES[strategy]().run(expander)
    assert stopped in ("done", "max_depth")
    statuses = {node.status for node in expander.tree.nodes[1:]}
    assert "open" not in statuses and "unfinished" in statuses
    parents = {node.parent.id for node in expander.tree.nodes if node.parent is not None}
    assert all(n.id in parents for n in expander.tree.nodes if n.status == "expanded")


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
async def test_the_result_reports_the_tree_as_the_strategy_left_it(strategy: StrategyName) -> None:
    provider = ScriptedProvider(depth=4)
    config = CONFIG.model_copy(update={"max_depth": 3})
    result = await solve(
        "p", provider=provider, scorer=ScriptedScorer(), config=config, strategy=strategy
    )
    expander = expander_for(ScriptedProvider(depth=4), config)
    await STRATEGIES[strategy]().run(expander)
    assert [n.status for n in result.nodes] == [n.record().status for n in expander.tree.nodes]
    assert result.unfinished == sum(n.status == "unfinished" for n in expander.tree.nodes)


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
async def test_an_interrupted_round_stops_the_search(strategy: StrategyName) -> None:
    hung = anyio.Event()

    async def hangs_after_the_root(request: StepRequest) -> list[str]:
        if request.depth >= 1:
            hung.set()
            await anyio.sleep_forever()
        return [f"step {i}\n\n" for i in range(request.n)]

    expander = expander_for(FunctionProvider(hangs_after_the_root))
    returned = False

    async def search() -> None:
        nonlocal returned
        await STRATEGIES[strategy]().run(expander)
        returned = True

    async with anyio.create_task_group() as tg:  # cut off once the second round hangs
        tg.start_soon(search)
        await hung.wait()
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert not returned
    # Cut-off expansions and paths still open are unfinished; nothing is left open.
    assert not [n for n in expander.tree.nodes[1:] if n.status in ("open", "expanded")]
    parents = {n.parent.id for n in expander.tree.nodes if n.parent is not None}
    cut = [n for n in expander.tree.nodes if n.width > 0 and n.id not in parents]
    assert all(n.status == "unfinished" for n in cut)
    assert sum(n.status == "unfinished" for n in expander.tree.nodes) >= 2
    # Every round was reported, the interrupted one with the children that had arrived.
    first, *rest = expander.usage.depths
    assert first.children == expander.tree.root.width
    assert rest == [] if strategy == "mcts" else [d.children for d in rest] == [0]


async def test_the_partial_result_of_a_timeout_is_read_from_the_tree() -> None:
    async def hangs_after_the_root(request: StepRequest) -> list[str]:
        if request.depth >= 1:
            await anyio.sleep_forever()
        return [f"step {i}\n\n" for i in range(request.n)]

    config = CONFIG.model_copy(update={"timeout_s": 0.2})
    with pytest.raises(SearchTimeout) as info:
        await solve(
            "p",
            provider=FunctionProvider(hangs_after_the_root),
            scorer=ScriptedScorer(),
            config=config,
        )
    partial = info.value.partial
    assert partial.unfinished == sum(n.status == "unfinished" for n in partial.nodes) > 0
    assert "open" not in {n.status for n in partial.nodes[1:]}


async def test_expand_each_returns_each_nodes_children_or_its_failure() -> None:
    from rebase_agent import ProviderError

    def steps(request: StepRequest) -> list[str]:
        if request.steps and request.steps[-1].startswith("bad"):
            raise ProviderError("flaky")
        return [
            f"{'bad' if request.depth == 0 and i == 1 else 'ok'} {i}\n\n" for i in range(request.n)
        ]

    expander = expander_for(FunctionProvider(steps))
    root = expander.tree.root
    (children,) = await expander.expand_each([(root, expander.tree.reserve_ids(2))])
    assert isinstance(children, list) and [c.step for c in children] == ["ok 0\n\n", "bad 1\n\n"]
    plan = [(child, expander.tree.reserve_ids(1)) for child in children]
    # Without a round a failure is returned, not recorded: the caller accounts for it.
    ok, failed = await expander.expand_each(plan)
    assert isinstance(ok, list) and isinstance(failed, ProviderError)
    assert children[1].status == "open" and expander.usage.failed_expansions == 0
    # Within a round it is recorded at once and counted in the round's statistics.
    plan = [(child, expander.tree.reserve_ids(1)) for child in children]
    with expander.round(plan) as this_round:
        await expander.expand_each(plan, into=this_round)
    assert [c.status for c in children] == ["expanded", "failed"]
    (failure,) = this_round.failures
    assert isinstance(failure, ProviderError) and this_round.stats.failed == 1
    assert expander.usage.failed_expansions == 1 and len(this_round.children) == 1


async def test_a_round_where_every_expansion_failed_raises_the_first_in_plan_order() -> None:
    from rebase_agent import ProviderError

    async def steps(request: StepRequest) -> list[str]:
        if request.depth == 0:
            return [f"s{i}\n\n" for i in range(request.n)]
        # The first node of the plan fails last.
        await anyio.sleep(0.05 if request.steps[0] == "s0\n\n" else 0.0)
        raise ProviderError(request.steps[0].strip())

    expander = expander_for(FunctionProvider(steps))
    children = await expander.expand_round([(expander.tree.root, 3)])
    with pytest.raises(ProviderError, match=r"^s0$"):
        await expander.expand_round([(child, 1) for child in children])
    assert [c.status for c in children] == ["failed"] * 3
