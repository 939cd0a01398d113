"""Run a few coroutines at once and return their results in order (structured, no bare tasks)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, cast

import anyio

__all__ = ("gather",)

T = TypeVar("T")


async def gather(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Await every call concurrently in one task group.

    The first call to fail cancels the others, and its exception is raised as is (not wrapped in
    an ``ExceptionGroup``), so callers can catch :class:`~rebase_agent.ProviderError` directly.

    Args:
        calls: Zero-argument async callables.

    Returns:
        Their results, in the order of ``calls``.
    """
    if len(calls) == 1:
        return [await calls[0]()]
    results: list[T | None] = [None] * len(calls)
    failure: list[BaseException] = []

    async with anyio.create_task_group() as tg:

        async def run(index: int, call: Callable[[], Awaitable[T]]) -> None:
            try:
                results[index] = await call()
            except Exception as exc:
                if not failure:
                    failure.append(exc)
                tg.cancel_scope.cancel()

        for index, call in enumerate(calls):
            tg.start_soon(run, index, call)
    if failure:
        raise failure[0]
    return cast(list[T], results)
