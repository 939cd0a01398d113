"""What the ``rebase-agent`` commands share, built in or plugged in (the
``rebase_agent.commands`` entry point: ``serve``, ``mcp``, ``probe``): backend and option lookups
as click usage errors, the notice of a run on a test double, and :func:`run_command`, which runs
a command's searches on uvloop's event loop (where installed) and a frozen heap."""

from __future__ import annotations

import gc
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
import click

from rebase_agent.backends import BackendFactory, double_notice, load_backend, parse_options

__all__ = (
    "EVENT_LOOP_VARIABLE",
    "backend_factory",
    "event_loop_options",
    "frozen_startup_heap",
    "note_if_double",
    "option_pairs",
    "run_command",
)

T = TypeVar("T")

EVENT_LOOP_VARIABLE = "REBASE_AGENT_EVENT_LOOP"
"""The environment variable that picks the commands' event loop: ``uvloop`` or ``asyncio``;
unset: uvloop's where it is installed, else asyncio's."""


def backend_factory(name: str) -> BackendFactory:
    """The backend ``name``, or a usage error that lists the known ones (or names the extra to
    install when the backend's dependencies are missing)."""
    try:
        return load_backend(name)
    except LookupError as exc:
        raise click.BadParameter(str(exc), param_hint="--backend") from exc
    except ImportError as exc:
        raise click.ClickException(f"backend {name!r} is not installed: {exc}") from exc


def option_pairs(pairs: Iterable[str], hint: str = "--option") -> dict[str, str]:
    """``KEY=VALUE`` pairs as a dict, or a usage error naming the bad pair."""
    try:
        return parse_options(pairs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from exc


def note_if_double(name: str) -> None:
    """Say on stderr, in one line, that backend ``name`` is a test double (when it is one)."""
    notice = double_notice(name)
    if notice is not None:
        click.echo(notice, err=True)


@contextmanager
def frozen_startup_heap() -> Iterator[None]:
    """Keep the objects that exist now (imported modules, loaded backends) out of the cyclic
    garbage collector's full collections while the block runs (:func:`gc.freeze`), and return
    them to it at the end (:func:`gc.unfreeze`).

    A search allocates containers at every request (nodes, completions, tasks), so the
    collector runs throughout, and each full collection walks every object the process holds:
    about 94,000 after a command's imports, against some 15,000 that 32 searches in flight keep
    alive. Over HTTP (``benchmarks/http_overhead.py``, 32 problems x budget 64, medians of three
    interleaved runs of each) freezing them took the client's CPU from 0.93 to 0.81 ms per
    request and the wall time from 1.34 to 1.24 x ideal; searches alone, in one process with
    nothing else, went from 0.40 to 0.25 ms per request. A command that runs searches wraps
    them in this; a program that drives searches itself can call :func:`gc.freeze` once it has
    started.

    Reference counting still frees frozen objects; only cycles among them wait for the block's
    end. Inside a block that froze the heap already (a command run from another), nothing
    changes.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def event_loop_options() -> dict[str, Any]:
    """anyio's asyncio backend options for a command: ``{"use_uvloop": True}`` where uvloop is
    installed (the ``openai`` and ``server`` extras install it on Linux and macOS) unless
    :data:`EVENT_LOOP_VARIABLE` says ``asyncio``.

    uvloop's loop runs the callbacks, timers and sockets of thousands of requests in flight in
    C: over HTTP (``benchmarks/http_overhead.py --loop``, 32 problems x budget 64) the client
    spent 0.61-0.63 ms of CPU per request on uvloop against 0.65-0.72 on asyncio's loop, and
    the provider's own HTTP client alone 0.26-0.27 against 0.32-0.38 (two interleaved runs of
    each on a 2-core machine).

    Raises:
        click.UsageError: The variable names another loop, or uvloop, which is not installed.
    """
    given = os.environ.get(EVENT_LOOP_VARIABLE, "")
    wanted = given.strip().lower()
    if wanted not in ("", "uvloop", "asyncio"):
        raise click.UsageError(f"{EVENT_LOOP_VARIABLE} must be uvloop or asyncio, got {given!r}")
    if wanted == "asyncio":
        return {}
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if wanted == "uvloop":
            raise click.UsageError(
                f"{EVENT_LOOP_VARIABLE}=uvloop, but uvloop is not installed (pip install uvloop)"
            ) from None
        return {}
    return {"use_uvloop": True}


def run_command(main: Callable[[], Awaitable[T]]) -> T:
    """Run a command's ``main`` to its end on the event loop of :func:`event_loop_options`,
    inside :func:`frozen_startup_heap`, and return what it returned."""
    options = event_loop_options()
    with frozen_startup_heap():
        return anyio.run(main, backend_options=options)
