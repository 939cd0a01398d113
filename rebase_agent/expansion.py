"""Expanding nodes: concurrent provider requests, each child scored as soon as it exists.

:class:`TreeExpander` is the machinery every strategy shares. A strategy decides how many
children each node gets; :meth:`TreeExpander.expand_round` sends one provider request per node
(``n`` = its width), all at once in one task group, and scores the children of each request as
soon as that request returns, without waiting for its slower siblings. It returns when the whole
round is done, so the strategy can reallocate with every reward of the depth in hand.

A request that finally fails (a :class:`ProviderError` or :class:`ScoringError` after the
plug-in's own retries) does not end the search: the node is marked ``failed``, the failure is
counted in the usage and logged, and the budget its children would have used stays in the pool
for the next allocation. Only a round in which every expansion failed, where nothing can make
progress, raises.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

import anyio

from rebase_agent.answers import AnswerExtractor, extract_answer, final_answer
from rebase_agent.config import RebaseConfig
from rebase_agent.exceptions import ProviderError, RebaseError, ScoringError
from rebase_agent.protocols import Provider, Scorer, ScoreRequest, StepCompletion, StepRequest
from rebase_agent.rewards import read_reward
from rebase_agent.tree import Node, SearchTree
from rebase_agent.usage import DepthStats, Usage

__all__ = ("TreeExpander",)

_SEED_MODULUS = 2**31 - 1

logger = logging.getLogger(__name__)


class TreeExpander:
    """One search's tree, and the calls that grow it.

    Args:
        problem: The problem being solved.
        provider: The policy.
        scorer: The process reward model.
        config: The search's config.
        extract_answer: Finds a step's (or a solution's) final answer.
        provider_limiter: Caps provider requests in flight (shared across searches).
        scorer_limiter: Caps scorer calls in flight (shared across searches).
        on_round: Called with each round's statistics when the round ends (progress reports).
    """

    def __init__(
        self,
        problem: str,
        *,
        provider: Provider,
        scorer: Scorer,
        config: RebaseConfig,
        extract_answer: AnswerExtractor,
        provider_limiter: anyio.CapacityLimiter,
        scorer_limiter: anyio.CapacityLimiter,
        on_round: Callable[[DepthStats], None] | None = None,
    ) -> None:
        self.problem = problem
        self.provider = provider
        self.scorer = scorer
        self.config = config
        self.extract_answer = extract_answer
        self.provider_limiter = provider_limiter
        self.scorer_limiter = scorer_limiter
        self.on_round = on_round
        self.tree = SearchTree()
        self.usage = Usage()

    async def expand_round(self, plan: Sequence[tuple[Node, int]]) -> list[Node]:
        """Expand every ``(node, width)`` of ``plan`` concurrently; return the new children.

        Each node gets ``width`` children from one provider request, scored in one scorer call.
        Children come back in id order (ids are reserved here, in ``plan`` order, so they do not
        depend on which request returns first).
        """
        stats = self.begin_round(
            depth=plan[0][0].depth if plan else 0,
            expanded=len(plan),
            budget=sum(width for _, width in plan),
        )
        children: list[Node] = []
        failures: list[RebaseError] = []
        try:
            async with anyio.create_task_group() as tg:
                for node, width in plan:
                    ids = self.tree.reserve_ids(width)
                    tg.start_soon(self._expand_into, node, ids, children, failures)
        except ExceptionGroup as group:
            # An unexpected error (a bug, not a failed request) cancels the round; surface it
            # itself, with its own cause, rather than a group of one.
            leaf = _first_leaf(group)
            raise leaf from leaf.__cause__
        finally:
            children.sort(key=lambda child: child.id)
            stats.failed = len(failures)
            self.end_round(stats, children)
        if plan and len(failures) == len(plan):
            raise failures[0]  # nothing could make progress
        return children

    def begin_round(self, *, depth: int, expanded: int, budget: int) -> DepthStats:
        """Start the statistics of one round of concurrent expansions."""
        stats = DepthStats(depth=depth, expanded=expanded, budget=budget)
        stats.wall_s = -time.perf_counter()
        self.usage.depths.append(stats)
        return stats

    def end_round(self, stats: DepthStats, children: Sequence[Node]) -> None:
        """Complete a round's statistics and report it to ``on_round``."""
        stats.wall_s += time.perf_counter()
        stats.children = len(children)
        stats.finished = sum(child.status == "finished" for child in children)
        logger.debug(
            "depth %d: expanded %d nodes with budget %d into %d children "
            "(%d finished, %d failed expansions) in %.3f s",
            stats.depth,
            stats.expanded,
            stats.budget,
            stats.children,
            stats.finished,
            stats.failed,
            stats.wall_s,
        )
        if self.on_round is not None:
            self.on_round(stats)

    async def _expand_into(
        self, node: Node, ids: range, out: list[Node], failures: list[RebaseError]
    ) -> None:
        try:
            out.extend(await self.expand(node, ids))
        except (ProviderError, ScoringError) as exc:
            self.record_failure(node, exc)
            failures.append(exc)

    def record_failure(self, node: Node, exc: RebaseError) -> None:
        """Mark ``node``'s expansion as failed, count it and log it."""
        node.status = "failed"
        node.error = f"{type(exc).__name__}: {exc}"
        self.usage.failed_expansions += 1
        logger.warning("expanding node %d (depth %d) failed: %s", node.id, node.depth, node.error)

    async def expand(self, node: Node, ids: range, *, rollout: bool = False) -> list[Node]:
        """Sample ``len(ids)`` children of ``node`` in one request and score them in one call.

        Args:
            node: The node to expand.
            ids: Ids for the children, from :meth:`SearchTree.reserve_ids`.
            rollout: Mark the children as rollout nodes (kept out of ``node.children``).

        Returns:
            The children, scored, with ``status == "finished"`` where they end a solution.
        """
        request = self.step_request(node, ids)
        async with self.provider_limiter:
            self.usage.provider_requests += 1
            completions = await self.provider.generate(request)
        for completion in completions:  # paid for, even when the expansion then fails
            self.usage.prompt_tokens += completion.prompt_tokens
            self.usage.completion_tokens += completion.completion_tokens
        _check_completions(self.provider, request, completions)
        kids = []
        for node_id, completion in zip(ids, completions, strict=True):
            child = self.tree.add_child(node, node_id, completion.text, rollout=rollout)
            child.finish_reason = completion.finish_reason
            child.prompt_tokens = completion.prompt_tokens
            child.completion_tokens = completion.completion_tokens
            child.solution_tokens = node.solution_tokens + completion.completion_tokens
            kids.append(child)
        try:
            await self._score(kids)
        except ScoringError:
            for child in kids:
                child.status = "failed"  # sampled and paid for, but never scored
            raise
        for child in kids:
            self._classify(child)
        return kids

    def step_request(self, node: Node, ids: range) -> StepRequest:
        """The request for children ``ids`` of ``node`` (the seed derives from the first id);
        its ``max_tokens`` is the step limit, clipped to what ``max_solution_tokens`` leaves."""
        config = self.config
        max_tokens = config.max_step_tokens
        if config.max_solution_tokens is not None:
            max_tokens = min(max_tokens, config.max_solution_tokens - node.solution_tokens)
        if max_tokens < 1:
            raise RebaseError(
                f"node {node.id} has used its max_solution_tokens={config.max_solution_tokens} "
                "and cannot be expanded"
            )
        return StepRequest(
            problem=self.problem,
            steps=node.steps,
            n=len(ids),
            temperature=config.temperature,
            top_p=config.top_p,
            max_tokens=max_tokens,
            stop=config.step_delimiters,
            seed=None if config.seed is None else (config.seed * 7919 + ids[0]) % _SEED_MODULUS,
        )

    async def _score(self, nodes: list[Node]) -> None:
        solutions = tuple(node.steps for node in nodes)
        async with self.scorer_limiter:
            self.usage.scorer_calls += 1
            self.usage.scored_solutions += len(solutions)
            scores = await self.scorer.score(
                ScoreRequest(problem=self.problem, solutions=solutions)
            )
        _check_scores(self.scorer, solutions, scores)
        for node, path_scores in zip(nodes, scores, strict=True):
            node.step_scores = [float(s) for s in path_scores]
            node.reward = read_reward(node.step_scores, self.config.reward)

    def _classify(self, node: Node) -> None:
        """Finished when the step ends the solution: a final answer (see
        :func:`~rebase_agent.answers.final_answer`), the end of the model's output, or an empty
        step (a model that writes a delimiter and nothing else would repeat it to
        ``max_depth``). Unfinished when the path has used ``max_solution_tokens`` otherwise."""
        if self.extract_answer is extract_answer:
            answer = final_answer(node.step, self.config.step_delimiters)
        else:  # a task's own extractor says what an answer is
            answer = self.extract_answer(node.step)
        if answer is None and node.finish_reason == "eos":
            answer = self.extract_answer("".join(node.steps))
        empty = not _strip_delimiters(node.step, self.config.step_delimiters).strip()
        if answer is not None or node.finish_reason == "eos" or empty:
            node.answer = answer
            node.status = "finished"
        elif (
            self.config.max_solution_tokens is not None
            and node.solution_tokens >= self.config.max_solution_tokens
        ):
            node.status = "unfinished"


def _strip_delimiters(step: str, delimiters: Sequence[str]) -> str:
    """``step`` without the delimiters that end it."""
    changed = True
    while changed:
        changed = False
        for delimiter in delimiters:
            if step.endswith(delimiter):
                step, changed = step[: -len(delimiter)], True
    return step


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception of a (nested) exception group that is not itself a group."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _check_completions(
    provider: Provider, request: StepRequest, completions: Sequence[StepCompletion]
) -> None:
    if len(completions) != request.n:
        raise ProviderError(
            f"{type(provider).__name__}.generate returned {len(completions)} completions "
            f"for n={request.n} (depth {request.depth})"
        )


def _check_scores(
    scorer: Scorer, solutions: tuple[tuple[str, ...], ...], scores: Sequence[Sequence[float]]
) -> None:
    name = type(scorer).__name__
    if len(scores) != len(solutions):
        raise ScoringError(
            f"{name}.score returned {len(scores)} score lists for {len(solutions)} solutions"
        )
    for i, (steps, path_scores) in enumerate(zip(solutions, scores, strict=True)):
        if len(path_scores) != len(steps):
            raise ScoringError(
                f"{name}.score returned {len(path_scores)} scores for solution {i}, "
                f"which has {len(steps)} steps"
            )
        if not all(isinstance(s, int | float) and math.isfinite(s) for s in path_scores):
            raise ScoringError(f"{name}.score returned a non-finite score: {list(path_scores)!r}")
