"""The process's open-file limit, which bounds requests in flight: each one holds a connection.

A request over HTTP/1.1 holds its own connection (a file descriptor) until its answer is read,
so a search that keeps 2,000 requests in flight needs 2,000 descriptors. Most systems start a
process with a soft limit of 1,024 (Linux) or 256 (macOS) and a much higher hard limit; past
the soft limit every new connection fails with ``EMFILE`` ("Too many open files"), which looks
like a server that refuses connections: retries, warnings, wall time lost.

:func:`connection_budget` does what Go's runtime does at start (since Go 1.19): it raises the
soft limit to the hard one, once per process, and says how many connections fit under it, so
:class:`~.endpoints.EndpointPool` can keep its limits there. Nothing is lowered, and only this
process (and the processes it starts later, which inherit it) sees the raised limit.
"""

from __future__ import annotations

import logging
import os
import threading

__all__ = ("RESERVED_FILES", "connection_budget", "open_file_limit")

logger = logging.getLogger("providers.openai_compat")

RESERVED_FILES = 256
"""Descriptors left for everything else in the process: the event loop, logs, model files,
other clients."""

_MACOS_OPEN_MAX = 10240
"""macOS refuses a soft limit above ``OPEN_MAX`` even when the hard limit is unlimited."""

_lock = threading.Lock()
_raised = False


def open_file_limit() -> int | None:
    """The process's soft limit on open files (``RLIMIT_NOFILE``); ``None`` where there is
    none to read (Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _raise_soft_limit() -> None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard one (once; later calls do nothing)."""
    global _raised
    with _lock:
        if _raised:
            return
        _raised = True
        try:
            import resource
        except ImportError:  # pragma: no cover - not on POSIX
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        infinite = resource.RLIM_INFINITY
        if soft in (infinite, hard):
            return
        # The hard limit first; where the system refuses it (macOS above OPEN_MAX, Linux
        # above nr_open when the hard limit is unlimited), OPEN_MAX if that is still a raise.
        targets = [hard]
        if soft < _MACOS_OPEN_MAX and (hard == infinite or hard > _MACOS_OPEN_MAX):
            targets.append(_MACOS_OPEN_MAX)
        for target in targets:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            except (ValueError, OSError):
                continue
            logger.info(
                "raised this process's open-file limit (RLIMIT_NOFILE) from %s to %s: each "
                "request in flight holds a connection",
                soft,
                "unlimited" if target == infinite else target,
            )
            return
        logger.debug("could not raise the open-file limit from %s (hard limit %s)", soft, hard)


def _files_open() -> int:
    """Descriptors this process has open now (0 where the system does not list them)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder))
        except OSError:
            continue
    return 0


def connection_budget(wanted: int) -> int:
    """How many of ``wanted`` connections the open-file limit leaves room for, after raising
    the soft limit to the hard one (see the module docs).

    Room is the soft limit less the descriptors already open and :data:`RESERVED_FILES`, at
    least 1. Pools in one process share the limit; each sees what is open when it asks, not
    what another pool may open later.

    Args:
        wanted: Connections the caller may open at once.

    Returns:
        ``wanted``, or fewer when the limit does not leave room for them.
    """
    if wanted < 1:
        raise ValueError(f"wanted must be >= 1, got {wanted}")
    _raise_soft_limit()
    limit = open_file_limit()
    if limit is None:
        return wanted
    return max(1, min(wanted, limit - _files_open() - RESERVED_FILES))
