"""Exceptions raised by rebase-agent.

The hierarchy::

    RebaseError                  every error the library raises on purpose
    ├── ProviderError            a provider failed to return steps
    │   ├── ProviderHTTPError    the server answered with an error status
    │   └── ProviderTimeout      the request timed out
    ├── ScoringError             a scorer failed, or returned scores of the wrong shape
    └── SearchFailed             a search stopped on an error; carries what it had paid for
        └── SearchTimeout        the whole search ran past its time limit

Misuse (a bad argument, a bad config) is a ``ValueError``: pydantic's ``ValidationError`` for
configs and requests, naming the field and the value, raised before any request is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rebase_agent.result import SearchResult

__all__ = (
    "ProviderError",
    "ProviderHTTPError",
    "ProviderTimeout",
    "RebaseError",
    "ScoringError",
    "SearchFailed",
    "SearchTimeout",
)


class RebaseError(Exception):
    """Base class of every error rebase-agent raises on purpose."""


class ProviderError(RebaseError):
    """A provider failed to return the steps it was asked for."""


class ProviderHTTPError(ProviderError):
    """A provider's server answered with an error status."""

    def __init__(self, message: str, *, status_code: int, retryable: bool = False) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retryable = retryable


class ProviderTimeout(ProviderError):
    """A provider request timed out."""


class ScoringError(RebaseError):
    """A scorer failed, or returned scores that do not match the request."""


class SearchFailed(RebaseError):
    """A search stopped on an error.

    ``partial`` holds everything the search had finished before it stopped (the tree so far, the
    finished candidates, the usage), so no paid-for work is lost. The cause is ``__cause__``.
    """

    def __init__(self, message: str, *, partial: SearchResult) -> None:
        super().__init__(message)
        self.partial = partial


class SearchTimeout(SearchFailed):
    """A search ran past ``RebaseConfig.timeout_s``."""
