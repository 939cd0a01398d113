from __future__ import annotations

import anyio
import pytest

from rebase_agent.concurrency import raising_first_error

pytestmark = pytest.mark.anyio


async def test_the_first_error_of_a_task_group_is_raised_itself_with_its_cause() -> None:
    async def fails() -> None:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise ValueError("bad") from exc

    with pytest.raises(ValueError, match="bad") as info:
        with raising_first_error():
            async with anyio.create_task_group() as tg:
                tg.start_soon(fails)
                tg.start_soon(anyio.sleep_forever)  # cancelled by the failure
    assert isinstance(info.value.__cause__, KeyError)


async def test_nested_groups_give_their_first_leaf() -> None:
    group = ExceptionGroup("outer", [ExceptionGroup("inner", [OSError("leaf")]), KeyError()])
    with pytest.raises(OSError, match="leaf"), raising_first_error():
        raise group


def test_other_errors_pass_through_unchanged() -> None:
    error = RuntimeError("plain")
    with pytest.raises(RuntimeError) as info, raising_first_error():
        raise error
    assert info.value is error
