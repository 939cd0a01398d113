"""In-process providers and scorers for tests, examples and demos: no model, no network.

* :class:`ScriptedProvider` writes deterministic steps that reach an answer after a set number of
  steps; :class:`ScriptedScorer` scores steps by rules and a stable hash.
* :class:`FunctionProvider` and :class:`FunctionScorer` wrap your own function (sync or async).

All of them record every request, count requests in flight and can hold requests at a gate
(an :class:`anyio.Event`), so tests can assert what a search sent and when, without timing.

Example::

    provider = ScriptedProvider(depth=3, answers=["42", "41"])
    scorer = ScriptedScorer(rules={"42": 0.9})
    result = await solve("What is 6 * 7?", provider=provider, scorer=scorer)
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio

from rebase_agent.protocols import FinishReason, ScoreRequest, StepCompletion, StepRequest
from rebase_agent.seeds import stable_seed

__all__ = ("FunctionProvider", "FunctionScorer", "ScriptedProvider", "ScriptedScorer")

_WORDS = ("compute", "simplify", "substitute", "factor", "expand", "check", "combine", "divide")


def _count_tokens(text: str) -> int:
    return len(text.split())


class _Recorder:
    """Records requests and counts how many are in flight; optionally holds them at a gate."""

    __test__ = False

    def __init__(
        self, gate: anyio.Event | None, latency: float, max_recorded: int | None = None
    ) -> None:
        self.gate = gate
        self.latency = latency
        self.max_recorded = max_recorded
        """Keep only the last this many requests (``None``: all), for long-running servers."""
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0

    async def _enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.latency:
                await anyio.sleep(self.latency)
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            self.in_flight -= 1
            raise

    def _exit(self) -> None:
        self.in_flight -= 1

    def _record(self, log: list[Any], request: object) -> None:
        log.append(request)
        if self.max_recorded is not None and len(log) > self.max_recorded:
            del log[: len(log) - self.max_recorded]


class ScriptedProvider(_Recorder):
    """A deterministic policy that reaches an answer after ``depth`` steps.

    Step ``k < depth`` reads ``"Step k: <word> <number>.\\n\\n"`` and ends at the delimiter; step
    ``depth`` reads ``"Step k: The answer is <a>."`` and ends the output, with ``a`` drawn from
    ``answers``. Draws depend on the problem, the path, the request seed and the child index,
    so a seeded search is reproducible.

    Args:
        depth: Steps in every solution.
        answers: Final answers to draw from.
        seed: Base seed of the draws.
        gate: If given, every request waits for this event before answering.
        latency: Seconds every request sleeps.
        script: Replaces the default steps: ``script(request, index)`` returns the step text or
            a full :class:`StepCompletion`.
        max_recorded: Keep only the last this many requests in ``requests`` (``None``: all).
    """

    def __init__(
        self,
        *,
        depth: int = 3,
        answers: Sequence[str] = ("42", "41", "24"),
        seed: int = 0,
        gate: anyio.Event | None = None,
        latency: float = 0.0,
        script: Callable[[StepRequest, int], str | StepCompletion] | None = None,
        max_recorded: int | None = None,
    ) -> None:
        super().__init__(gate, latency, max_recorded)
        self.depth = depth
        self.answers = tuple(answers)
        self.seed = seed
        self.script = script
        self.requests: list[StepRequest] = []

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        """Return ``request.n`` scripted steps."""
        self._record(self.requests, request)
        await self._enter()
        try:
            return [self._complete(request, i) for i in range(request.n)]
        finally:
            self._exit()

    def _complete(self, request: StepRequest, index: int) -> StepCompletion:
        prompt_tokens = _count_tokens(request.problem) + sum(map(_count_tokens, request.steps))
        prompt_tokens = prompt_tokens if index == 0 else 0  # the prefix is read once per request
        if self.script is not None:
            out = self.script(request, index)
            if isinstance(out, StepCompletion):
                return out
            return StepCompletion(
                text=out,
                finish_reason="step" if out.endswith(request.stop) else "eos",
                prompt_tokens=prompt_tokens,
                completion_tokens=_count_tokens(out),
            )
        rng = random.Random(
            stable_seed(self.seed, request.seed, request.problem, "".join(request.steps), index)
        )
        k = request.depth + 1
        reason: FinishReason
        if k >= self.depth:
            text, reason = f"Step {k}: The answer is {rng.choice(self.answers)}.", "eos"
        else:
            text = f"Step {k}: {rng.choice(_WORDS)} {rng.randint(1, 99)}.{request.stop[0]}"
            reason = "step"
        return StepCompletion(
            text=text,
            finish_reason=reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=_count_tokens(text),
        )


class ScriptedScorer(_Recorder):
    """A deterministic PRM: a step scores ``rules[s]`` if it contains ``s``, else a stable hash.

    Args:
        rules: Substring to score; the first rule a step matches decides its score.
        default_range: Range of the hashed score of steps no rule matches.
        gate: If given, every call waits for this event.
        latency: Seconds every call sleeps.
        max_recorded: Keep only the last this many requests in ``requests`` (``None``: all).
    """

    def __init__(
        self,
        *,
        rules: Mapping[str, float] | None = None,
        default_range: tuple[float, float] = (0.1, 0.7),
        gate: anyio.Event | None = None,
        latency: float = 0.0,
        max_recorded: int | None = None,
    ) -> None:
        super().__init__(gate, latency, max_recorded)
        self.rules = dict(rules or {})
        self.default_range = default_range
        self.requests: list[ScoreRequest] = []

    async def score(self, request: ScoreRequest) -> list[list[float]]:
        """One score per step of each solution."""
        self._record(self.requests, request)
        await self._enter()
        try:
            return [
                [self.step_score(request.problem, steps[: i + 1]) for i in range(len(steps))]
                for steps in request.solutions
            ]
        finally:
            self._exit()

    def step_score(self, problem: str, steps: Sequence[str]) -> float:
        """The score of the last of ``steps``."""
        for needle, value in self.rules.items():
            if needle in steps[-1]:
                return value
        low, high = self.default_range
        return low + (high - low) * (stable_seed(problem, *steps) % 10_000) / 10_000


ProviderFunction = Callable[
    [StepRequest], Sequence[StepCompletion | str] | Awaitable[Sequence[StepCompletion | str]]
]
ScorerFunction = Callable[[ScoreRequest], list[list[float]] | Awaitable[list[list[float]]]]


class FunctionProvider(_Recorder):
    """A provider backed by your function, sync or async.

    The function takes the :class:`StepRequest` and returns ``request.n`` step texts (finish
    reason ``"step"`` when the text ends with a delimiter, else ``"eos"``) or completions.
    """

    def __init__(self, function: ProviderFunction, *, gate: anyio.Event | None = None) -> None:
        super().__init__(gate, 0.0)
        self.function = function
        self.requests: list[StepRequest] = []

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        """Call the function and wrap plain strings as completions."""
        self._record(self.requests, request)
        await self._enter()
        try:
            out = self.function(request)
            items = await out if inspect.isawaitable(out) else out
        finally:
            self._exit()
        return [
            item
            if isinstance(item, StepCompletion)
            else StepCompletion(
                text=item,
                finish_reason="step" if item.endswith(request.stop) else "eos",
                completion_tokens=_count_tokens(item),
            )
            for item in items
        ]


class FunctionScorer(_Recorder):
    """A scorer backed by your function, sync or async, returning one score per step."""

    def __init__(self, function: ScorerFunction, *, gate: anyio.Event | None = None) -> None:
        super().__init__(gate, 0.0)
        self.function = function
        self.requests: list[ScoreRequest] = []

    async def score(self, request: ScoreRequest) -> list[list[float]]:
        """Call the function."""
        self._record(self.requests, request)
        await self._enter()
        try:
            out = self.function(request)
            return await out if inspect.isawaitable(out) else out
        finally:
            self._exit()
