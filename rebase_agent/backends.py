"""Backends by name: a provider and a scorer built from string options.

Every command uses :data:`DEFAULT_BACKEND` (``llama``, the embedded Gemma 3 270M) unless told
otherwise. Plug-in packages add backends through the ``rebase_agent.backends`` entry-point
group; each entry is a factory ``(**options: str) -> (Provider, Scorer)``. The core only looks
entry points up by name, so it never imports a plug-in. Scripts and notebooks can add a factory
for their own process with :func:`register_backend`.

Two backends are built in, and both are test doubles, with no model behind them: ``scripted``
(the scripted policy and scorer of :mod:`rebase_agent.testing`) and ``arithmetic-sim`` (the
simulated arithmetic policy and its verifier). A double runs only when named, and every run on
one says so (:func:`double_notice`, the ``double`` field of evaluation rows); register your own
with ``register_backend(name, factory, double=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

from rebase_agent.protocols import Provider, Scorer

__all__ = (
    "BACKEND_GROUP",
    "DEFAULT_BACKEND",
    "BackendFactory",
    "aclose",
    "backend_names",
    "double_notice",
    "is_double",
    "load_backend",
    "parse_flag",
    "parse_options",
    "prepare",
    "register_backend",
    "search_defaults",
)

BACKEND_GROUP = "rebase_agent.backends"
BackendFactory = Callable[..., tuple[Provider, Scorer]]

DEFAULT_BACKEND = "llama"
"""The backend of every command (``solve``, ``eval``, ``serve``) unless one is named: the
embedded Gemma 3 270M on llama.cpp."""


def scripted_backend(**options: str) -> tuple[Provider, Scorer]:
    """The built-in test double: ``depth`` steps per solution, ``answers`` comma-separated; the
    scorer favours the first answer."""
    from rebase_agent.testing import ScriptedProvider, ScriptedScorer

    answers = options.get("answers", "42,41,24").split(",")
    # A server runs this double for as long as it is up: keep a bounded record of requests.
    provider = ScriptedProvider(
        depth=int(options.get("depth", "3")), answers=answers, max_recorded=1000
    )
    return provider, ScriptedScorer(rules={answers[0]: 0.9}, max_recorded=1000)


def arithmetic_sim_backend(**options: str) -> tuple[Provider, Scorer]:
    """The simulated arithmetic policy and its verifier (see
    :func:`rebase_agent.evaluation.arithmetic.simulated_backend`)."""
    from rebase_agent.evaluation.arithmetic import simulated_backend

    return simulated_backend(**options)


_REGISTERED: dict[str, BackendFactory] = {}
_DOUBLES: dict[str, str] = {}
"""Test doubles by backend name: what each one is, for its notice."""


def register_backend(name: str, factory: BackendFactory, *, double: bool | str = False) -> None:
    """Make ``factory`` available as backend ``name`` in this process, ahead of entry points.

    Args:
        name: The backend name, as in ``--backend NAME``.
        factory: ``(**options: str) -> (Provider, Scorer)``.
        double: Mark it a test double (no model behind it), so every run on it says so; a
            string says what it is (``"a scripted policy, no model"``).
    """
    _REGISTERED[name] = factory
    if double:
        _DOUBLES[name] = double if isinstance(double, str) else "no model"
    else:
        _DOUBLES.pop(name, None)


def is_double(name: str) -> bool:
    """Whether backend ``name`` is a test double: its answers mean nothing."""
    return name in _DOUBLES


def double_notice(name: str) -> str | None:
    """The one-line notice a run on backend ``name`` prints, or ``None`` for a real backend."""
    what = _DOUBLES.get(name)
    if what is None:
        return None
    return f"note: backend {name!r} is a test double ({what}): its answers mean nothing"


register_backend("scripted", scripted_backend, double="a scripted policy, no model")
register_backend(
    "arithmetic-sim", arithmetic_sim_backend, double="a simulated arithmetic policy, no model"
)


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


async def prepare(*parts: object) -> None:
    """Run each provider's or scorer's async ``prepare()``, where it has one (the OpenAI
    provider's server probe), so that a bad server fails a command before any search.

    Raises:
        ProviderError: What a ``prepare`` raises: a server on which no search can run, with the
            probe's reason.
    """
    for part in parts:
        ready = getattr(part, "prepare", None)
        if ready is not None:
            await ready()


def parse_flag(name: str, value: str) -> bool:
    """A backend option's on/off value: ``on``/``true``/``yes``/``1`` or ``off``/``false``/
    ``no``/``0``, in any case.

    Raises:
        ValueError: Any other value, naming the option.
    """
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"option {name} must be on or off, got {value!r}")


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


def search_defaults(provider: object) -> dict[str, Any]:
    """The :class:`~rebase_agent.RebaseConfig` fields a backend recommends for its provider (its
    ``search_defaults`` attribute, e.g. short steps for a tiny model), to apply under the user's
    own settings; ``{}`` when it has none."""
    defaults = getattr(provider, "search_defaults", None)
    return dict(defaults) if isinstance(defaults, dict) else {}
