"""A calculator in the policy's loop: the model writes the arithmetic, the calculator its value.

Small models choose the right operation far more often than they compute it: Gemma 3 270M writes
``Step 1: 15 + 27 =`` and then, as often as not, ``12``. :class:`CalculatorProvider` wraps any
:class:`~rebase_agent.Provider` the way GSM8K's calculator annotations did (Cobbe et al., 2021):
every step is sampled with ``=`` as an extra stop string; when a step stops there and the text
before it ends with arithmetic that :func:`rebase_agent.claims.open_value` reads with confidence,
the exact value is written after it (`` 42``) and the model continues the same step from there.
When the text before ``=`` is not arithmetic (``x =``, ``Step 1: 15 =``) nothing is written and the
model continues as it would have.

That needs a provider that tells a step stopped at ``=`` from one stopped at its delimiter; an
HTTP server that trims stop strings and does not say which one matched (llama-server's and
llama-cpp-python's ``/v1/completions``) cannot. For those, ``method="correct"`` reads the whole
step instead: at the first ``=`` whose arithmetic the text does not follow with its exact value,
the text is cut after the ``=``, the value written, and the model continues from there. The
step comes out as ``method="stop"`` would have made it (the model's own continuation after the
right value), it costs a request only where the model's value was wrong, and the tokens it
generated past the cut are counted, as they were paid for.

What the search sees is unchanged: one :class:`~rebase_agent.StepCompletion` per child, the whole
step as one text, ending as the model ended it. Its ``completion_tokens`` count only the tokens
the model generated (the calculator's digits are prompt tokens of the continuation, counted in
``prompt_tokens`` when the backend evaluates them), so compute comparisons stay on the paper's
basis. Every strategy sees the same calculator, so comparisons between them stay fair. The cost
is one more request to the wrapped provider per ``=`` in a step; with a local engine that reuses
the prefix's KV cache, a continuation costs little more than the tokens it generates. A
cache-less server evaluates the whole prompt again for each one, so each step says how many
continuations it took and how many of its own generated tokens they sent
(``StepCompletion.continuations``, ``continuation_context_tokens``; the written values are not
counted among them), and the report's cache-less prompt cost counts them as requests.
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any, Literal

import anyio

from rebase_agent.backends import aclose
from rebase_agent.claims import open_value
from rebase_agent.protocols import Provider, StepCompletion, StepRequest

__all__ = (
    "TRIGGER",
    "CalculatorProvider",
    "Method",
    "calculating",
    "estimate_continuations",
    "format_value",
    "writes_value",
)

TRIGGER = "="
"""The stop string at which the calculator looks at the step."""

Method = Literal["stop", "correct"]
"""How the calculator finds a step's ``=``: ``stop`` samples with ``=`` as a stop string (the
provider must say which stop string ended a step); ``correct`` reads the finished step and
rewrites it from the first wrong value on (any provider)."""

_WRITTEN = re.compile(r"[ \t]*\$?[ \t]*(-?\d[\d,]*(?:\.\d+)?)")
"""The number a step writes right after an ``=``: ``" 42"``, ``" $1,250"``, ``" 3.33"``."""


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


def writes_value(after: str, value: Fraction) -> bool:
    """Whether ``after``, the text right after an ``=``, starts with ``value``: exactly, or
    rounded to the decimal places it shows (``3.33`` and ``3.3`` for 10/3)."""
    found = _WRITTEN.match(after)
    if found is None:
        return False
    digits = found.group(1).replace(",", "")
    written = Fraction(digits)
    if written == value:
        return True
    places = len(digits.partition(".")[2])
    if places == 0:
        return False
    return bool(abs(written - value) * 2 * 10**places <= 1)


def calculating(provider: object) -> bool:
    """Whether ``provider`` is a :class:`CalculatorProvider` that writes values (its
    ``enabled``), so that a command can say the values after ``=`` came from a calculator."""
    return isinstance(provider, CalculatorProvider) and provider.enabled


class CalculatorProvider:
    """A :class:`~rebase_agent.Provider` whose steps get their arithmetic from a calculator.

    Args:
        provider: The policy to wrap; it must honour extra stop strings, keeping the stop string
            at the end of the text (every provider of this project does).
        max_calls: Most calculator calls in one step; after that the step is finished without
            stopping at ``=``.
        decimals: Places shown for a value that is not a short exact decimal.
        method: ``stop`` (the default): sample with ``=`` as an extra stop string, for a
            provider that tells which stop string ended a step (the llama.cpp provider);
            ``correct``: read each finished step and rewrite it from its first wrong value, for
            any provider (see the module docs).

    The wrapped provider's ``search_defaults``, ``prepare`` (an HTTP provider's server probe),
    ``count_prompt_tokens`` and ``aclose`` are passed through, so a backend can wrap its
    provider without losing them; it is an async context manager that closes the wrapped
    provider on exit.

    Attributes:
        enabled: Whether values are written; with ``False`` every request goes to the wrapped
            provider unchanged (a backend may decide it once the server is probed, in
            :meth:`prepare`).
    """

    def __init__(
        self,
        provider: Provider,
        *,
        max_calls: int = 4,
        decimals: int = 2,
        method: Method = "stop",
    ) -> None:
        if max_calls < 1:
            raise ValueError(f"max_calls must be at least 1, got {max_calls!r}")
        if decimals < 0:
            raise ValueError(f"decimals must be at least 0, got {decimals!r}")
        if method not in ("stop", "correct"):
            raise ValueError(f"method must be 'stop' or 'correct', got {method!r}")
        self.provider = provider
        self.max_calls = max_calls
        self.decimals = decimals
        self.method: Method = method
        self.enabled = True

    @property
    def search_defaults(self) -> dict[str, Any] | None:
        """The wrapped provider's recommended search fields, if it has any."""
        defaults = getattr(self.provider, "search_defaults", None)
        return defaults if isinstance(defaults, dict) else None

    async def prepare(self) -> None:
        """Run the wrapped provider's ``prepare()`` (e.g. the OpenAI provider's server probe),
        if it has one; called again before every request, so it must return at once once done.

        Raises:
            ProviderError: What the wrapped provider's ``prepare`` raises (a server on which no
                search can run).
        """
        prepare = getattr(self.provider, "prepare", None)
        if prepare is not None:
            await prepare()

    async def count_prompt_tokens(self, problem: str) -> int | None:
        """The wrapped provider's count of ``problem``'s prompt, if it offers one
        (:class:`~rebase_agent.protocols.PromptCounter`); the calculator adds no prompt."""
        count = getattr(self.provider, "count_prompt_tokens", None)
        return None if count is None else await count(problem)

    async def aclose(self) -> None:
        """Close the wrapped provider, if it has an ``aclose``."""
        await aclose(self.provider)

    async def __aenter__(self) -> CalculatorProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        """Sample ``request.n`` steps, each finished with the calculator's help."""
        await self.prepare()
        if not self.enabled or TRIGGER in request.stop:
            return await self.provider.generate(request)
        if self.method == "correct":
            first = await self.provider.generate(request)
            step = self._correct
        else:
            first = await self.provider.generate(
                request.model_copy(update={"stop": (*request.stop, TRIGGER)})
            )
            step = self._finish
        done: list[StepCompletion | None] = [None] * len(first)

        async def complete(index: int, completion: StepCompletion) -> None:
            done[index] = await step(request, index, completion)

        async with anyio.create_task_group() as tg:
            for index, completion in enumerate(first):
                tg.start_soon(complete, index, completion)
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
        step = _Rewrite(completion)
        calls = 0
        while self._at_trigger(request, completion):
            calls += 1
            value = open_value("".join(request.steps) + step.text)
            if value is not None:
                step.text += " " + format_value(value, decimals=self.decimals)
            left = request.max_tokens - step.completion_tokens
            if left <= 0:
                step.finish_reason = "length"
                break
            stop = request.stop if calls >= self.max_calls else (*request.stop, TRIGGER)
            completion = await self._continue(
                request, index, calls, step, step.completion_tokens, left, stop
            )
        return step.completion()

    async def _correct(
        self, request: StepRequest, index: int, completion: StepCompletion
    ) -> StepCompletion:
        """``completion`` rewritten from each wrong value on (``method="correct"``)."""
        before = "".join(request.steps)
        step = _Rewrite(completion)
        # Tokens of the step's own text (estimated by length where a cut drops a tail); the
        # step's limit applies to these, while completion_tokens counts all that was generated.
        step_tokens = completion.completion_tokens
        start, calls = 0, 0
        while calls < self.max_calls:
            found = _first_wrong(before, step.text, start)
            if found is None:
                break
            cut, value = found
            if step.text:
                step_tokens = round(step_tokens * cut / len(step.text))
            calls += 1
            step.text = step.text[:cut] + " " + format_value(value, decimals=self.decimals)
            start = len(step.text)
            left = request.max_tokens - step_tokens
            if left <= 0:
                step.finish_reason = "length"
                break
            completion = await self._continue(
                request, index, calls, step, step_tokens, left, request.stop
            )
            step_tokens += completion.completion_tokens
        return step.completion()

    async def _continue(
        self,
        request: StepRequest,
        index: int,
        calls: int,
        step: _Rewrite,
        sent: int,
        max_tokens: int,
        stop: tuple[str, ...],
    ) -> StepCompletion:
        """Let the model go on after ``step``'s text, of which ``sent`` tokens are the model's
        (one more request), add what it wrote to ``step`` and return it."""
        follow = _follow(request, step.text, index, calls, max_tokens=max_tokens, stop=stop)
        (completion,) = await self.provider.generate(follow)
        step.add(completion, sent)
        return completion

    def __repr__(self) -> str:
        return f"CalculatorProvider({self.provider!r})"


class _Rewrite:
    """A step the calculator is rewriting: its text so far, the reason its last piece ended, the
    tokens every request for it cost, and the continuations it took."""

    __slots__ = (
        "completion_tokens",
        "continuation_context_tokens",
        "continuations",
        "finish_reason",
        "prompt_tokens",
        "text",
    )

    def __init__(self, completion: StepCompletion) -> None:
        self.text = completion.text
        self.finish_reason = completion.finish_reason
        self.prompt_tokens = completion.prompt_tokens
        self.completion_tokens = completion.completion_tokens
        self.continuations = completion.continuations
        self.continuation_context_tokens = completion.continuation_context_tokens

    def add(self, completion: StepCompletion, sent: int) -> None:
        """Append a continuation the model wrote after ``sent`` of the step's generated tokens,
        and count what it cost."""
        self.text += completion.text
        self.finish_reason = completion.finish_reason
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.continuations += 1 + completion.continuations
        self.continuation_context_tokens += sent + completion.continuation_context_tokens

    def completion(self) -> StepCompletion:
        return StepCompletion(
            text=self.text,
            finish_reason=self.finish_reason,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            continuations=self.continuations,
            continuation_context_tokens=self.continuation_context_tokens,
        )


def estimate_continuations(
    text: str, completion_tokens: int, *, max_calls: int = 4
) -> tuple[int, int]:
    """The continuations a step written by ``method="stop"`` took, read from its ``text``: for
    trees recorded before steps counted them (``StepCompletion.continuations``).

    The calculator continued the step after each of its first ``max_calls`` ``=``; the step's
    own tokens each continuation sent are estimated by the share of ``text`` before that ``=``
    (of ``completion_tokens``, the step's generated tokens). A step that ran out of tokens right
    at an ``=`` was not continued there; its text cannot show it, so it is counted as one more.

    Returns:
        The number of continuations, and the step's own tokens they sent.
    """
    if max_calls < 1:
        raise ValueError(f"max_calls must be at least 1, got {max_calls!r}")
    ends: list[int] = []
    at = text.find(TRIGGER)
    while at >= 0 and len(ends) < max_calls:
        ends.append(at + len(TRIGGER))
        at = text.find(TRIGGER, at + len(TRIGGER))
    sent = sum(round(completion_tokens * end / len(text)) for end in ends)
    return len(ends), sent


def _first_wrong(before: str, text: str, start: int) -> tuple[int, Fraction] | None:
    """The first ``=`` of ``text`` at or after ``start`` whose arithmetic (read from the
    solution ``before`` + ``text``) is not followed by its exact value: the position right
    after that ``=``, and the value; ``None`` when every value is right."""
    at = text.find(TRIGGER, start)
    while at >= 0:
        end = at + len(TRIGGER)
        value = open_value(before + text[:end])
        if value is not None and not writes_value(text[end:], value):
            return end, value
        at = text.find(TRIGGER, end)
    return None


def _follow(
    request: StepRequest,
    text: str,
    index: int,
    calls: int,
    *,
    max_tokens: int,
    stop: tuple[str, ...],
) -> StepRequest:
    """The request that continues child ``index``'s step ``text`` after calculator call
    ``calls``: one sample, its own seed derived from the request's."""
    seed = request.seed
    if seed is not None:
        seed = (seed * 7919 + index * 104729 + calls) % 2**31
    return request.model_copy(
        update={
            "steps": (*request.steps, text),
            "n": 1,
            "max_tokens": max_tokens,
            "stop": stop,
            "seed": seed,
        }
    )
