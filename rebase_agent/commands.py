"""What the ``rebase-agent`` commands share, built in or plugged in (the
``rebase_agent.commands`` entry point: ``serve``, ``mcp``, ``probe``): backend and option lookups
as click usage errors, the notice of a run on a test double, and the heap frozen while searches
run."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import click

from rebase_agent.backends import BackendFactory, double_notice, load_backend, parse_options

__all__ = ("backend_factory", "frozen_startup_heap", "note_if_double", "option_pairs")


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
