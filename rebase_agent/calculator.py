"""A calculator in the policy's loop: the model writes the arithmetic, the calculator its value.

Small models choose the right operation far more often than they compute it: Gemma 3 270M writes
``Step 1: 15 + 27 =`` and then, as often as not, ``12``. :class:`CalculatorProvider` wraps any
:class:`~rebase_agent.Provider` the way GSM8K's calculator annotations did (Cobbe et al., 2021):
every step is sampled with ``=`` as an extra stop string; when a step stops there and the text
before it ends with arithmetic that :func:`rebase_agent.claims.open_value` reads with confidence,
the exact value is written after it (`` 42``) and the model continues the same step from there.
When the text before ``=`` is not arithmetic (``x =``, ``Step 1: 15 =``) nothing is written and the
model continues as it would have.

What the search sees is unchanged: one :class:`~rebase_agent.StepCompletion` per child, the whole
step as one text, ending as the model ended it. Its ``completion_tokens`` count only the tokens
the model generated (the calculator's digits are prompt tokens of the continuation, counted in
``prompt_tokens`` when the backend evaluates them), so compute comparisons stay on the paper's
basis. Every strategy sees the same calculator, so comparisons between them stay fair. The cost
is one more request to the wrapped provider per ``=`` in a step; with a local engine that reuses
the prefix's KV cache, a continuation costs little more than the tokens it generates.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import anyio

from rebase_agent.backends import aclose
from rebase_agent.claims import open_value
from rebase_agent.protocols import Provider, StepCompletion, StepRequest

__all__ = ("TRIGGER", "CalculatorProvider", "format_value")

TRIGGER = "="
"""The stop string at which the calculator looks at the step."""


def format_value(value: Fraction, *, decimals: int = 2) -> str:
    """``value`` as a step would write it: an integer, an exact decimal of up to six places, or
    else rounded to ``decimals`` places (``10/3`` → ``3.33``, which the claim check accepts as a
    rounded value)."""
    if value.denominator == 1:
        return str(value.numerator)
    rest, places = value.denominator, 0
    for prime in (2, 5):
        while rest % prime == 0:
            rest //= prime
    if rest == 1:
        power = 1
        while (value * power).denominator != 1:
            power, places = power * 10, places + 1
    with localcontext() as ctx:
        ctx.prec = 80
        exact = Decimal(value.numerator) / Decimal(value.denominator)
        shown = places if rest == 1 and places <= 6 else decimals
        return str(exact.quantize(Decimal(1).scaleb(-shown)))


class CalculatorProvider:
    """A :class:`~rebase_agent.Provider` whose steps get their arithmetic from a calculator.

    Args:
        provider: The policy to wrap; it must honour extra stop strings, keeping the stop string
            at the end of the text (every provider of this project does).
        max_calls: Most calculator calls in one step; after that the step is finished without
            stopping at ``=``.
        decimals: Places shown for a value that is not a short exact decimal.

    The wrapped provider's ``search_defaults`` and ``aclose`` are passed through, so a backend
    can wrap its provider without losing either.
    """

    def __init__(self, provider: Provider, *, max_calls: int = 4, decimals: int = 2) -> None:
        if max_calls < 1:
            raise ValueError(f"max_calls must be at least 1, got {max_calls!r}")
        if decimals < 0:
            raise ValueError(f"decimals must be at least 0, got {decimals!r}")
        self.provider = provider
        self.max_calls = max_calls
        self.decimals = decimals

    @property
    def search_defaults(self) -> dict[str, Any] | None:
        """The wrapped provider's recommended search fields, if it has any."""
        defaults = getattr(self.provider, "search_defaults", None)
        return defaults if isinstance(defaults, dict) else None

    async def aclose(self) -> None:
        """Close the wrapped provider, if it has an ``aclose``."""
        await aclose(self.provider)

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        """Sample ``request.n`` steps, each finished with the calculator's help."""
        if TRIGGER in request.stop:
            return await self.provider.generate(request)
        stopping = request.model_copy(update={"stop": (*request.stop, TRIGGER)})
        first = await self.provider.generate(stopping)
        done: list[StepCompletion | None] = [None] * len(first)

        async def finish(index: int, completion: StepCompletion) -> None:
            done[index] = await self._finish(request, index, completion)

        async with anyio.create_task_group() as tg:
            for index, completion in enumerate(first):
                tg.start_soon(finish, index, completion)
        return [completion for completion in done if completion is not None]

    def _at_trigger(self, request: StepRequest, completion: StepCompletion) -> bool:
        text = completion.text
        return (
            completion.finish_reason == "step"
            and text.endswith(TRIGGER)
            and not any(text.endswith(stop) for stop in request.stop)
        )

    async def _finish(
        self, request: StepRequest, index: int, completion: StepCompletion
    ) -> StepCompletion:
        text = completion.text
        prompt_tokens, completion_tokens = completion.prompt_tokens, completion.completion_tokens
        finish_reason = completion.finish_reason
        calls = 0
        while self._at_trigger(request, completion):
            calls += 1
            solution = "".join(request.steps) + text
            value = open_value(solution)
            if value is not None:
                text += " " + format_value(value, decimals=self.decimals)
            left = request.max_tokens - completion_tokens
            if left <= 0:
                finish_reason = "length"
                break
            stop = request.stop if calls >= self.max_calls else (*request.stop, TRIGGER)
            seed = request.seed
            if seed is not None:
                seed = (seed * 7919 + index * 104729 + calls) % 2**31
            follow = request.model_copy(
                update={
                    "steps": (*request.steps, text),
                    "n": 1,
                    "max_tokens": left,
                    "stop": stop,
                    "seed": seed,
                }
            )
            (completion,) = await self.provider.generate(follow)
            text += completion.text
            prompt_tokens += completion.prompt_tokens
            completion_tokens += completion.completion_tokens
            finish_reason = completion.finish_reason
        return StepCompletion(
            text=text,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    def __repr__(self) -> str:
        return f"CalculatorProvider({self.provider!r})"
