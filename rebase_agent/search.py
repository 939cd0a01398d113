"""The entry points: :func:`solve` for one problem, :class:`RebaseSearch` to reuse a setup.

A :class:`RebaseSearch` holds a provider, a scorer, a config and two ``CapacityLimiter``s, so
many problems solved concurrently through one object share the same caps on requests in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Literal, overload

import anyio
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rebase_agent.answers import AnswerExtractor, extract_answer
from rebase_agent.concurrency import raising_first_error
from rebase_agent.config import RebaseConfig, StrategyName
from rebase_agent.exceptions import SearchFailed, SearchTimeout
from rebase_agent.expansion import TreeExpander
from rebase_agent.protocols import Provider, Scorer
from rebase_agent.result import Candidate, SearchResult
from rebase_agent.strategies import STRATEGIES
from rebase_agent.usage import DepthStats, recording
from rebase_agent.voting import vote

__all__ = ("RebaseSearch", "solve")


class _SearchSetup(BaseModel):
    """Validates the arguments that are not part of the config, before anything is sent."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    strategy: StrategyName
    provider: Provider
    scorer: Scorer
    config: RebaseConfig

    @model_validator(mode="after")
    def _dvts_budget_splits_into_subtrees(self) -> _SearchSetup:
        budget, width = self.config.budget, self.config.beam_width
        if self.strategy == "dvts" and budget % width:
            raise ValueError(
                f"strategy 'dvts' grows budget / beam_width subtrees, so budget ({budget}) "
                f"must be a multiple of beam_width ({width})"
            )
        return self


class _Problem(BaseModel):
    problem: str = Field(min_length=1)


class RebaseSearch:
    """A reusable search: provider, scorer, config, strategy and shared concurrency limits.

    Args:
        provider: The policy model (any :class:`~rebase_agent.Provider`).
        scorer: The process reward model (any :class:`~rebase_agent.Scorer`).
        config: Search settings; the defaults when ``None``.
        strategy: ``"rebase"``, ``"sampling"``, ``"beam"``, ``"mcts"`` or ``"dvts"``.
        extract_answer: Finds a solution's final answer; the math extractor by default.

    Raises:
        pydantic.ValidationError: On an unknown strategy or an object that is not a provider
            or a scorer, naming the argument.

    Example::

        search = RebaseSearch(provider, scorer, RebaseConfig(budget=32))
        results = await search.solve_many(problems, max_concurrent=8)
    """

    def __init__(
        self,
        provider: Provider,
        scorer: Scorer,
        config: RebaseConfig | None = None,
        *,
        strategy: StrategyName = "rebase",
        extract_answer: AnswerExtractor = extract_answer,
    ) -> None:
        config = config if config is not None else RebaseConfig()
        setup = _SearchSetup(strategy=strategy, provider=provider, scorer=scorer, config=config)
        self.provider = provider
        self.scorer = scorer
        self.config = config
        self.strategy: StrategyName = setup.strategy
        self.extract_answer = extract_answer
        self.provider_limiter = anyio.CapacityLimiter(self.config.max_concurrent_requests)
        self.scorer_limiter = anyio.CapacityLimiter(self.config.max_concurrent_scores)

    def with_config(self, config: RebaseConfig) -> RebaseSearch:
        """A search like this one with another config, sharing its provider, scorer, answer
        extractor and concurrency limits (the limits of ``config`` are not applied)."""
        other = RebaseSearch(
            self.provider,
            self.scorer,
            config,
            strategy=self.strategy,
            extract_answer=self.extract_answer,
        )
        other.provider_limiter = self.provider_limiter
        other.scorer_limiter = self.scorer_limiter
        return other

    async def solve(
        self, problem: str, *, on_round: Callable[[DepthStats], None] | None = None
    ) -> SearchResult:
        """Search for a solution of ``problem``.

        Args:
            problem: The problem statement.
            on_round: Called after each round of expansions (each depth, for the level
                strategies) with its statistics, for progress reports.

        Raises:
            SearchFailed: A provider or scorer failed; ``exc.partial`` holds what was finished.
            SearchTimeout: ``config.timeout_s`` passed; ``exc.partial`` likewise.
        """
        _Problem(problem=problem)
        expander = TreeExpander(
            problem,
            provider=self.provider,
            scorer=self.scorer,
            config=self.config,
            extract_answer=self.extract_answer,
            provider_limiter=self.provider_limiter,
            scorer_limiter=self.scorer_limiter,
            on_round=on_round,
        )
        strategy = STRATEGIES[self.strategy]()
        started = time.perf_counter()
        try:
            with recording(expander.usage), anyio.move_on_after(self.config.timeout_s) as deadline:
                stopped = await strategy.run(expander)
        except Exception as exc:
            partial = await self._result(expander, "error", started)
            raise SearchFailed(f"search failed: {exc!r}", partial=partial) from exc
        if deadline.cancelled_caught:
            partial = await self._result(expander, "timeout", started)
            raise SearchTimeout(
                f"search ran past timeout_s={self.config.timeout_s}", partial=partial
            )
        return await self._result(expander, stopped, started)

    @overload
    async def solve_many(
        self,
        problems: Sequence[str],
        *,
        max_concurrent: int = ...,
        return_exceptions: Literal[False] = ...,
    ) -> list[SearchResult]: ...

    @overload
    async def solve_many(
        self,
        problems: Sequence[str],
        *,
        max_concurrent: int = ...,
        return_exceptions: Literal[True],
    ) -> list[SearchResult | SearchFailed]: ...

    async def solve_many(
        self, problems: Sequence[str], *, max_concurrent: int = 8, return_exceptions: bool = False
    ) -> list[SearchResult] | list[SearchResult | SearchFailed]:
        """Solve ``problems`` concurrently, at most ``max_concurrent`` at a time, in order.

        The provider and scorer limits of this object apply across all of them.

        Args:
            problems: The problems.
            max_concurrent: Searches running at once.
            return_exceptions: If true, a failed search's :class:`SearchFailed` (with its
                ``partial`` result) takes its place in the list and the others go on; if false,
                the first failure cancels the rest and is raised.
        """
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent!r}")
        results: list[SearchResult | SearchFailed | None] = [None] * len(problems)
        limiter = anyio.CapacityLimiter(max_concurrent)

        async def one(index: int) -> None:
            async with limiter:
                try:
                    results[index] = await self.solve(problems[index])
                except SearchFailed as exc:
                    if not return_exceptions:
                        raise
                    results[index] = exc

        with raising_first_error():
            async with anyio.create_task_group() as tg:
                for index in range(len(problems)):
                    tg.start_soon(one, index)
        return [r for r in results if r is not None]

    async def _result(self, expander: TreeExpander, stopped: str, started: float) -> SearchResult:
        """Assemble the result from the tree as the strategy left it: candidates, votes, tree
        and usage. The tree is only read (the expander owns each node's status)."""
        config = self.config
        candidates = []
        unfinished = 0
        for node in sorted(expander.tree.nodes, key=lambda n: n.id):
            if node.status == "unfinished":
                unfinished += 1
            elif node.status == "finished":
                candidates.append(
                    Candidate(
                        node_id=node.id,
                        answer=node.answer,
                        steps=list(node.steps),
                        step_scores=list(node.step_scores),
                        score=node.reward,
                    )
                )
        chosen, votes = await vote(
            candidates,
            aggregation=config.aggregation,
            equivalence=config.answer_equivalence,
            timeout_s=config.answer_timeout_s,
        )
        expander.usage.wall_s = time.perf_counter() - started
        return SearchResult(
            problem=expander.problem,
            strategy=self.strategy,
            config=config,
            answer=None if chosen is None else chosen.answer,
            solution=None if chosen is None else chosen.text,
            chosen=None if chosen is None else chosen.node_id,
            candidates=candidates,
            votes=votes,
            unfinished=unfinished,
            stopped=stopped,
            nodes=expander.tree.records(),
            usage=expander.usage,
        )


async def solve(
    problem: str,
    *,
    provider: Provider,
    scorer: Scorer,
    config: RebaseConfig | None = None,
    strategy: StrategyName = "rebase",
    extract_answer: AnswerExtractor = extract_answer,
    on_round: Callable[[DepthStats], None] | None = None,
) -> SearchResult:
    """Solve one problem with REBASE (or ``"sampling"``, ``"beam"``, ``"mcts"``, ``"dvts"``).

    Example::

        result = await solve("What is 7 * 6?", provider=provider, scorer=scorer,
                             config=RebaseConfig(budget=16))
        print(result.answer, result.usage.completion_tokens)

    See :class:`RebaseSearch` for the arguments and errors.
    """
    search = RebaseSearch(
        provider, scorer, config, strategy=strategy, extract_answer=extract_answer
    )
    return await search.solve(problem, on_round=on_round)
