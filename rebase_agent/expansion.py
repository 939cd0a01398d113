"""Expanding nodes: concurrent provider requests, each child scored as soon as it exists.

:class:`TreeExpander` is the machinery every strategy shares. A strategy decides how many
children each node gets; :meth:`TreeExpander.expand_round` sends one provider request per node
(``n`` = its width), all at once in one task group, and scores the children of each request as
soon as that request returns, without waiting for its slower siblings. It returns when the whole
round is done, so the strategy can reallocate with every reward of the depth in hand. A strategy
that does more within one round (MCTS rolls out from the new children) opens the round itself
with :meth:`TreeExpander.round` and expands with :meth:`TreeExpander.expand_each`.

A request that finally fails (a :class:`ProviderError` or :class:`ScoringError` after the
plug-in's own retries) does not end the search: the node is marked ``failed``, the failure is
counted in the usage and logged, and the budget its children would have used stays in the pool
for the next allocation. Only a round in which every expansion failed, where nothing can make
progress, raises.

Node status
-----------
The expander is the one writer of :attr:`Node.status <rebase_agent.tree.Node.status>`: the
strategy decides, and says so through these methods; nothing else assigns a status, and the
result is read from the tree without changing it.

* ``open``: every new node (:meth:`SearchTree.add_child <rebase_agent.tree.SearchTree.add_child>`).
* ``expanded`` / ``pruned``: :meth:`TreeExpander.allocate` gives a node its width, which
  :meth:`TreeExpander.round` (and so :meth:`~TreeExpander.expand_round`) does for every node
  of the round's plan; a width of 0 prunes.
* ``finished`` / ``unfinished``: a new child, once scored, by :meth:`TreeExpander.expand`
  (a final answer; or ``max_solution_tokens`` used up without one).
* ``failed``: :meth:`TreeExpander.record_failure`, for a node whose expansion finally failed,
  and :meth:`TreeExpander.expand` for children sampled but never scored.
* ``unfinished``: :meth:`TreeExpander.stop`, for every path still open when the search stops
  (and every expansion cut off before its children arrived). A strategy calls it when it
  returns; a round that is interrupted (an error, a timeout, a cancellation) calls it itself,
  since the search ends there.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import anyio

from rebase_agent.answers import AnswerExtractor, extract_answer, final_answer
from rebase_agent.concurrency import holding, raising_first_error, run_all
from rebase_agent.config import RebaseConfig
from rebase_agent.exceptions import ProviderError, RebaseError, ScoringError
from rebase_agent.protocols import Provider, Scorer, ScoreRequest, StepCompletion, StepRequest
from rebase_agent.rewards import read_reward
from rebase_agent.tree import Node, SearchTree
from rebase_agent.usage import DepthStats, Usage

__all__ = ("Expansion", "Round", "TreeExpander")

_SEED_MODULUS = 2**31 - 1

logger = logging.getLogger(__name__)

Expansion = list[Node] | RebaseError
"""What expanding one node gave: its scored children, or the failure that ended it."""


class Round:
    """One round of concurrent expansions, as :meth:`TreeExpander.round` opens it."""

    def __init__(self, plan: Sequence[tuple[Node, range]], stats: DepthStats) -> None:
        self.plan = plan
        """The nodes expanded in this round, with the ids reserved for their children."""
        self.stats = stats
        """The round's statistics (in ``usage.depths``), completed when the round ends."""
        self.children: list[Node] = []
        """The plan's children, added as each expansion is scored; in id order at the end."""
        self._failures: dict[int, RebaseError] = {}

    @property
    def failures(self) -> list[RebaseError]:
        """The plan's expansions that finally failed, in plan order."""
        return [self._failures[index] for index in sorted(self._failures)]


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
        depend on which request returns first). See :meth:`round` for what the round records
        and when it raises.
        """
        reserved = [(node, self.tree.reserve_ids(width)) for node, width in plan]
        with self.round(reserved) as this_round:
            await self.expand_each(reserved, into=this_round)
        return this_round.children

    @contextmanager
    def round(self, plan: Sequence[tuple[Node, range]]) -> Iterator[Round]:
        """Open one round of expansions over ``plan``: each node with the ids of its children.

        On entry every node of ``plan`` is allocated ``len(ids)`` children (``expanded``) and
        the round's :class:`DepthStats` start; expand the plan inside the block with
        :meth:`expand_each` (``into=`` the round). On exit the statistics are completed and
        passed to ``on_round``, also when the block was interrupted.

        Raises:
            RebaseError: The first failure (in plan order) when every expansion of a non-empty
                plan failed: nothing could make progress, and the search stops.
            BaseException: Whatever interrupted the block (an error, a cancellation), after
                :meth:`stop`: the search ends there.
        """
        for node, ids in plan:
            self.allocate(node, len(ids))
        stats = DepthStats(
            depth=min((node.depth for node, _ in plan), default=0),
            expanded=len(plan),
            budget=sum(len(ids) for _, ids in plan),
        )
        stats.wall_s = -time.perf_counter()
        self.usage.depths.append(stats)
        current = Round(plan, stats)
        try:
            yield current
        except BaseException:
            self.stop("interrupted")
            raise
        finally:
            current.children.sort(key=lambda child: child.id)
            self._end_round(stats, current.children)
        failures = current.failures
        if plan and len(failures) == len(plan):
            self.stop("failed")
            raise failures[0]  # nothing could make progress

    async def expand_each(
        self,
        plan: Sequence[tuple[Node, range]],
        *,
        rollout: bool = False,
        into: Round | None = None,
    ) -> list[Expansion]:
        """Expand every ``(node, ids)`` of ``plan`` concurrently, each with :meth:`expand`.

        Args:
            plan: The nodes, each with the ids reserved for its children.
            rollout: Mark the children as rollout nodes (see :meth:`expand`).
            into: The round ``plan`` belongs to: each node's children join
                ``into.children`` as soon as they are scored, and a failed expansion is
                recorded at once (:meth:`record_failure`) and counted in the round. Without
                it, failures are only returned, for the caller to account.

        Returns:
            In plan order, each node's children, or the :class:`ProviderError` or
            :class:`ScoringError` that finally ended its expansion.

        Raises:
            Exception: Any other error (a bug, not a failed request) cancels the other
                expansions and is raised itself, with its own cause, not as a group.
        """
        outcomes: list[Expansion] = [[] for _ in plan]

        async def one(index: int, node: Node, ids: range) -> None:
            try:
                children = await self.expand(node, ids, rollout=rollout)
            except (ProviderError, ScoringError) as exc:
                outcomes[index] = exc
                if into is not None:
                    self.record_failure(node, exc)
                    into._failures[index] = exc
                    into.stats.failed += 1
            else:
                outcomes[index] = children
                if into is not None:
                    into.children.extend(children)

        with raising_first_error():
            await run_all([partial(one, i, node, ids) for i, (node, ids) in enumerate(plan)])
        return outcomes

    def allocate(self, node: Node, width: int) -> None:
        """Give ``node`` ``width`` children: ``expanded``, or ``pruned`` when ``width`` is 0."""
        node.width = width
        node.status = "expanded" if width > 0 else "pruned"

    def stop(self, reason: str) -> str:
        """End the search for ``reason``; return ``reason`` (for ``return expander.stop(...)``).

        Every path still open (a non-root node with status ``open``) and every expansion cut
        off before its children arrived (``expanded`` with no child) becomes ``unfinished``.
        Calling it again changes nothing.
        """
        parents = {node.parent.id for node in self.tree.nodes if node.parent is not None}
        for node in self.tree.nodes:
            cut_off = node.status == "expanded" and node.id not in parents
            if cut_off or (node.status == "open" and node.parent is not None):
                node.status = "unfinished"
        logger.debug("search stopped: %s", reason)
        return reason

    def _end_round(self, stats: DepthStats, children: Sequence[Node]) -> None:
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
        async with holding(self.provider_limiter):
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
            child.continuations = completion.continuations
            child.continuation_context_tokens = completion.continuation_context_tokens
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
        async with holding(self.scorer_limiter):
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
