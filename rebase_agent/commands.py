"""What the ``rebase-agent`` commands share, built in or plugged in (the
``rebase_agent.commands`` entry point: ``serve``, ``mcp``, ``probe``): backend and option lookups
as click usage errors, and the notice of a run on a test double."""

from __future__ import annotations

from collections.abc import Iterable

import click

from rebase_agent.backends import BackendFactory, double_notice, load_backend, parse_options

__all__ = ("backend_factory", "note_if_double", "option_pairs")


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
