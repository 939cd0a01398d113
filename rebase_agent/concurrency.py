"""Structured-concurrency helpers shared by the search and the expander."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

import anyio

__all__ = ("holding", "raising_first_error")


class holding:  # lower case: it reads like a function, ``async with holding(limiter):``
    """Hold one token of ``limiter`` for the block: ``async with holding(limiter): ...``.

    The same as ``async with limiter:``, without its two checkpoints when a token is free (and
    no task waits for one, so the queue stays fair): anyio's ``acquire`` yields to the event
    loop, in a shielded scope, even when it need not wait, and the search takes two tokens per
    expansion. A block that awaits anything checkpoints there; when it must wait, it waits in
    ``limiter.acquire()`` as usual. The token is released when the block exits, however it
    exits.
    """

    __slots__ = ("limiter",)

    def __init__(self, limiter: anyio.CapacityLimiter) -> None:
        self.limiter = limiter

    async def __aenter__(self) -> None:
        try:
            self.limiter.acquire_nowait()
        except anyio.WouldBlock:
            await self.limiter.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.limiter.release()


@contextmanager
def raising_first_error() -> Iterator[None]:
    """Raise the first exception of an exception group leaving the block, not the group.

    A task group wraps what its tasks raise in an :class:`ExceptionGroup`. Where the first error
    cancels the rest (the others are consequences, or the same failure again), callers want that
    error itself: this raises the group's first leaf exception (depth first), ``from`` its own
    ``__cause__``. Anything that is not an ``ExceptionGroup`` passes through unchanged.

    Example::

        with raising_first_error():
            async with anyio.create_task_group() as tg:
                ...
    """
    try:
        yield
    except ExceptionGroup as group:
        exc: BaseException = group
        while isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        raise exc from exc.__cause__
