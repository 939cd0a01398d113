"""The event loops the HTTP client's tests run on: asyncio's own and uvloop's (which the
commands use where it is installed, :func:`rebase_agent.commands.event_loop_options`)."""

from __future__ import annotations

from importlib.util import find_spec

import pytest

ASYNCIO_LOOPS = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(
        ("asyncio", {"use_uvloop": True}),
        id="uvloop",
        marks=pytest.mark.skipif(find_spec("uvloop") is None, reason="uvloop is not installed"),
    ),
]
"""``anyio_backend`` parameters: ``@pytest.fixture(params=ASYNCIO_LOOPS)``."""
