"""Structured-concurrency helpers shared by the search and the expander."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ("raising_first_error",)


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
