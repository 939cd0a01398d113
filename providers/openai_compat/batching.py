"""Requests that arrive together go out together: one request, a list of prompts.

A search sends a depth's expansions at once, one request per node: tens of requests for one
problem, thousands for a batch of problems. Each request costs the client its own round of HTTP
work (routing, limits, a connection, headers, JSON) and costs the server as much again. vLLM
and SGLang take a list of prompts in one ``/v1/completions`` request and answer one choice per
prompt, in prompt order (vLLM numbers its choices over the prompts in turn, SGLang by position),
with ``usage`` summed over them.

:class:`PromptBatcher` collects the requests for one problem with the same sampling parameters
that arrive in the same turns of the event loop (the first waits until a turn passes in which
nobody joined), sends them as one request, and hands each caller its own choices. A node that
asks for ``n`` children sends its prompt ``n`` times with ``n`` left out: one ``n`` would apply
to every prompt of the request, and both servers run ``n`` as that many copies of the request
anyway.

- Only unseeded requests are batched (the caller sends a seeded one alone, as before): one
  seed serves every prompt of a request, so the copies of a prompt would sample the same text,
  and which requests share a batch depends on timing.
- A caller cancelled while it waits just leaves; the others get their choices. If the caller
  that sends the batch is cancelled, the others send theirs again without it.
- A batch that fails with a client error status (a 4xx the retries do not cure) is sent again
  one request at a time, so one bad prompt (longer than the context) fails alone, with its own
  error; any other failure (a timeout, a server that stays down) is every member's, each raising
  its own copy of it.
- Usage: the server reports sums; completion tokens are split over the choices by the length
  of their text, prompt tokens over the prompts by their length.

:class:`Coalescer` is the mechanism, for any request whose members can share one: the
judges and generative PRMs on ``/completions`` use it too (a depth's score calls for one
problem, in requests of their ``batch_size`` prompts).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import anyio
import anyio.lowlevel

from rebase_agent.exceptions import ProviderError, ProviderHTTPError, ProviderTimeout
from rebase_agent.protocols import StepCompletion, StepRequest

__all__ = ("BatchMember", "Coalescer", "PromptBatcher", "split_into")

M = TypeVar("M")
R = TypeVar("R")
T = TypeVar("T")
_SETTLE_TURNS = 8
"""Event-loop turns the first caller waits at most for others to join."""
_CLIENT_ERRORS = range(400, 500)
_NOT_THE_PROMPT = frozenset({408, 409, 425, 429})
"""Client error statuses that say nothing about the prompts (retried by the pool anyway)."""


@dataclass(eq=False)
class _Batch(Generic[M, R]):
    key: Hashable
    members: list[M] = field(default_factory=list)
    weight: int = 0
    """Prompts the request will carry (the members' weights)."""
    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: list[R] | None = None
    error: ProviderError | None = None
    then: Literal["take", "again", "alone"] = "take"
    """What the members do once ``done`` is set: take their part of ``outcome`` (or raise a
    copy of ``error``), batch again without the sender (it was cancelled), or send alone."""


class Coalescer(Generic[M, R]):
    """Sends the members that arrive under one key in the same turns of the event loop as one
    request (see the module docs for what happens on failure and cancellation).

    Args:
        send_batch: Sends several members as one request; their results, in member order.
        send_one: Sends one member alone.
        max_weight: The most prompts one batch carries (each member says how many it adds);
            more start another batch.
    """

    def __init__(
        self,
        send_batch: Callable[[Sequence[M]], Awaitable[list[R]]],
        send_one: Callable[[M], Awaitable[R]],
        *,
        max_weight: int = 256,
    ) -> None:
        if max_weight < 1:
            raise ValueError(f"max_weight must be >= 1, got {max_weight!r}")
        self._send_batch = send_batch
        self._send_one = send_one
        self.max_weight = max_weight
        self._open: dict[Hashable, _Batch[M, R]] = {}
        self.batches_sent = 0
        """Requests that carried more than one member (for tests and benchmarks)."""

    async def submit(self, key: Hashable, member: M, weight: int = 1) -> R:
        """``member``'s result, sent with the members that arrive with it under ``key``.

        Raises:
            ProviderError: As ``send_one`` would; for a failure of the whole batch, a copy of
                that failure (its cause is the batch's).
        """
        batch = self._open.get(key)
        leading = batch is None or batch.weight + weight > self.max_weight
        if batch is None or leading:
            batch = self._open[key] = _Batch(key)
        index = len(batch.members)
        batch.members.append(member)
        batch.weight += weight
        if leading:
            return await self._lead(batch, index)
        await batch.done.wait()
        if batch.then == "again":
            return await self.submit(key, member, weight)
        if batch.then == "alone":
            return await self._send_one(member)
        if batch.error is not None:
            raise _copy(batch.error) from batch.error
        assert batch.outcome is not None
        return batch.outcome[index]

    def _close(self, batch: _Batch[M, R]) -> None:
        """No one joins ``batch`` from now on (a later member starts another)."""
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]

    async def _lead(self, batch: _Batch[M, R], index: int) -> R:
        """Wait for the others to join, send the batch and tell them how it went."""
        own = batch.members[index]
        try:
            for _ in range(_SETTLE_TURNS):
                joined = len(batch.members)
                await anyio.lowlevel.checkpoint()
                if len(batch.members) == joined:
                    break
        except anyio.get_cancelled_exc_class():
            batch.then = "again"
            self._close(batch)
            batch.done.set()
            raise
        self._close(batch)
        if len(batch.members) == 1:
            batch.done.set()  # nobody waits for it
            return await self._send_one(own)
        try:
            self.batches_sent += 1
            outcome = await self._send_batch(batch.members)
        except anyio.get_cancelled_exc_class():
            batch.then = "again"
            raise
        except ProviderHTTPError as exc:
            if exc.status_code not in _CLIENT_ERRORS or exc.status_code in _NOT_THE_PROMPT:
                batch.error = exc
                raise
            batch.then = "alone"  # which prompt was refused, the answer does not say
        except ProviderError as exc:
            batch.error = exc
            raise
        except BaseException:
            batch.then = "alone"  # not a failed request (a bug, a bad answer): each on its own
            raise
        else:
            batch.outcome = outcome
            return outcome[index]
        finally:
            batch.done.set()
        return await self._send_one(own)


@dataclass(frozen=True)
class BatchMember:
    """One caller's part of a batch: its request and its prompt (sent ``request.n`` times)."""

    request: StepRequest
    prompt: str


SendBatch = Callable[[Sequence[BatchMember]], Awaitable[list[list[StepCompletion]]]]
"""Sends the members' prompts as one request; each member's completions, in member order."""
SendOne = Callable[[StepRequest, str], Awaitable[list[StepCompletion]]]
"""Sends one request on its own (the provider's usual path)."""


class PromptBatcher:
    """Coalesces concurrent unseeded generation requests for one problem with the same
    sampling parameters (see the module docs).

    Args:
        send_batch: Sends several members as one request.
        send_one: Sends one request alone.
        max_prompts: The most prompts one request carries; more start another batch.
    """

    def __init__(self, send_batch: SendBatch, send_one: SendOne, *, max_prompts: int = 256):
        if max_prompts < 1:
            raise ValueError(f"max_prompts must be >= 1, got {max_prompts!r}")
        self._send_one = send_one

        async def alone(member: BatchMember) -> list[StepCompletion]:
            return await send_one(member.request, member.prompt)

        self._coalescer = Coalescer(send_batch, alone, max_weight=max_prompts)

    @property
    def batches_sent(self) -> int:
        """Requests that carried more than one member (for tests and benchmarks)."""
        return self._coalescer.batches_sent

    async def generate(self, request: StepRequest, prompt: str) -> list[StepCompletion]:
        """``request.n`` completions of ``prompt``, sent with the requests that arrive with it
        (a seeded request goes alone).

        Raises:
            ProviderError: As the provider's own path does; for a failure of the whole batch,
                a copy of that failure (its cause is the batch's).
        """
        if request.seed is not None:
            return await self._send_one(request, prompt)
        key = (
            request.problem,
            request.temperature,
            request.top_p,
            request.max_tokens,
            request.stop,
        )
        return await self._coalescer.submit(key, BatchMember(request, prompt), request.n)


def split_into(items: Sequence[T], sizes: Iterable[int]) -> list[list[T]]:
    """``items`` cut into consecutive runs of ``sizes`` (each member's part of a batch's
    answer, in member order)."""
    parts, start = [], 0
    for size in sizes:
        parts.append(list(items[start : start + size]))
        start += size
    return parts


def _copy(error: ProviderError) -> ProviderError:
    """A member's own copy of the batch's failure (one exception object raised in several
    tasks would collect all their tracebacks)."""
    if isinstance(error, ProviderHTTPError):
        return ProviderHTTPError(
            str(error), status_code=error.status_code, retryable=error.retryable
        )
    if isinstance(error, ProviderTimeout):
        return ProviderTimeout(str(error))
    return ProviderError(str(error))
