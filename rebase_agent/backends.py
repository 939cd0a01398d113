"""Backends by name: a provider and a scorer built from string options.

``scripted`` is built in (the in-process doubles of :mod:`rebase_agent.testing`). Plug-in
packages add others through the ``rebase_agent.backends`` entry-point group; each entry is a
factory ``(**options: str) -> (Provider, Scorer)``. The core only looks entry points up by name,
so it never imports a plug-in. Scripts and notebooks can add a factory for their own process
with :func:`register_backend`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.metadata import entry_points

from rebase_agent.protocols import Provider, Scorer

__all__ = (
    "BACKEND_GROUP",
    "BackendFactory",
    "aclose",
    "backend_names",
    "load_backend",
    "parse_options",
    "register_backend",
)

BACKEND_GROUP = "rebase_agent.backends"
BackendFactory = Callable[..., tuple[Provider, Scorer]]


def scripted_backend(**options: str) -> tuple[Provider, Scorer]:
    """The built-in demo backend: ``depth`` steps per solution, ``answers`` comma-separated; the
    scorer favours the first answer."""
    from rebase_agent.testing import ScriptedProvider, ScriptedScorer

    answers = options.get("answers", "42,41,24").split(",")
    provider = ScriptedProvider(depth=int(options.get("depth", "3")), answers=answers)
    return provider, ScriptedScorer(rules={answers[0]: 0.9})


_REGISTERED: dict[str, BackendFactory] = {"scripted": scripted_backend}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make ``factory`` available as backend ``name`` in this process, ahead of entry points."""
    _REGISTERED[name] = factory


def backend_names() -> list[str]:
    """Every backend name that :func:`load_backend` knows."""
    return sorted({*_REGISTERED, *(ep.name for ep in entry_points(group=BACKEND_GROUP))})


def load_backend(name: str) -> BackendFactory:
    """The factory registered as ``name``.

    Raises:
        LookupError: No backend has that name; the message lists the known ones.
    """
    if name in _REGISTERED:
        return _REGISTERED[name]
    for ep in entry_points(group=BACKEND_GROUP):
        if ep.name == name:
            factory: BackendFactory = ep.load()
            return factory
    raise LookupError(f"unknown backend {name!r}; known: {', '.join(backend_names())}")


async def aclose(*parts: object) -> None:
    """Close each provider or scorer that has an async ``aclose()`` (HTTP clients, models)."""
    for part in parts:
        close = getattr(part, "aclose", None)
        if close is not None:
            await close()


def parse_options(pairs: Iterable[str]) -> dict[str, str]:
    """``["k=v", ...]`` as a dict.

    Raises:
        ValueError: A pair without ``=`` or with an empty key, named.
    """
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        options[key] = value
    return options
