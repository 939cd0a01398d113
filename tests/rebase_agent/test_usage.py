from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from rebase_agent import Usage, record_scorer_tokens
from rebase_agent.usage import recording

pytestmark = pytest.mark.anyio


async def record_in_a_task(prompt_tokens: int) -> None:
    await anyio.lowlevel.checkpoint()
    record_scorer_tokens(prompt_tokens)


async def test_scorer_tokens_go_to_the_usage_being_recorded() -> None:
    outer, inner = Usage(), Usage()
    record_scorer_tokens(100, 100)  # outside any search: nothing to add to
    with recording(outer) as current:
        assert current is outer
        record_scorer_tokens(3)
        with recording(inner):
            await anyio.to_thread.run_sync(record_scorer_tokens, 5, 2)  # a worker thread
        async with anyio.create_task_group() as tg:
            tg.start_soon(record_in_a_task, 7)  # a task started inside the block
    record_scorer_tokens(100, 100)
    assert (outer.scorer_prompt_tokens, outer.scorer_completion_tokens) == (10, 0)
    assert (inner.scorer_prompt_tokens, inner.scorer_completion_tokens) == (5, 2)
