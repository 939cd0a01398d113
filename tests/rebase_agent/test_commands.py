"""What the commands share: the heap frozen while their searches run."""

from __future__ import annotations

import gc
from typing import ClassVar

import pytest
from click.testing import CliRunner

from rebase_agent import StepCompletion, StepRequest
from rebase_agent.backends import register_backend
from rebase_agent.cli import main
from rebase_agent.commands import frozen_startup_heap
from rebase_agent.testing import ScriptedProvider, ScriptedScorer


class _Holder:
    """A container the collector tracks."""


def test_objects_made_before_the_block_are_frozen_inside_it_and_returned_after() -> None:
    assert gc.get_freeze_count() == 0
    before = _Holder()
    with frozen_startup_heap():
        inside = _Holder()
        assert gc.get_freeze_count() > 0
        assert not any(o is before for o in gc.get_objects())  # out of every generation
        assert any(o is inside for o in gc.get_objects())  # new objects are collected as usual
    assert gc.get_freeze_count() == 0
    assert any(o is before for o in gc.get_objects())


def test_cycles_made_before_the_block_are_collected_after_it() -> None:
    import weakref

    cycle = _Holder()
    cycle.me = cycle  # type: ignore[attr-defined]
    alive = weakref.ref(cycle)
    with frozen_startup_heap():
        del cycle
        gc.collect()
        assert alive() is not None  # frozen: the collector does not look at it
    gc.collect()
    assert alive() is None


def test_the_heap_is_unfrozen_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"), frozen_startup_heap():
        raise RuntimeError("boom")
    assert gc.get_freeze_count() == 0


def test_a_block_inside_a_frozen_heap_leaves_it_frozen() -> None:
    with frozen_startup_heap():
        frozen = gc.get_freeze_count()
        with frozen_startup_heap():
            pass
        assert gc.get_freeze_count() == frozen
    assert gc.get_freeze_count() == 0


class _RecordingProvider(ScriptedProvider):
    """Records how many objects were frozen at each request."""

    frozen: ClassVar[list[int]] = []

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        self.frozen.append(gc.get_freeze_count())
        return await super().generate(request)


def _recording_backend(**options: str) -> tuple[ScriptedProvider, ScriptedScorer]:
    return _RecordingProvider(depth=2), ScriptedScorer()


@pytest.mark.parametrize("command", ["solve", "eval"])
def test_solve_and_eval_run_their_searches_on_a_frozen_heap(command: str, tmp_path) -> None:
    register_backend("freeze-recorder", _recording_backend, double="a test of the frozen heap")
    _RecordingProvider.frozen = []
    if command == "solve":
        args = ["solve", "What is 2 + 2?", "--budget", "2"]
    else:
        data = tmp_path / "problems.jsonl"
        data.write_text('{"question": "What is 2 + 2?", "answer": "4"}\n', encoding="utf-8")
        args = ["eval", str(data), "--budgets", "2", "-o", str(tmp_path / "out.jsonl")]
    out = CliRunner().invoke(main, [*args, "--backend", "freeze-recorder"])
    assert out.exit_code == 0, out.output
    assert _RecordingProvider.frozen and min(_RecordingProvider.frozen) > 1000
    assert gc.get_freeze_count() == 0  # given back when the command ends


def test_serve_runs_its_server_on_a_frozen_heap(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    from rebase_server.cli import serve

    seen: list[int] = []

    async def fake_serve(self: object, sockets: object = None) -> None:
        seen.append(gc.get_freeze_count())
        self.started = True  # type: ignore[attr-defined]

    monkeypatch.setattr(uvicorn.Server, "serve", fake_serve)
    config = tmp_path / "serve.toml"
    config.write_text('[routes.r]\nbackend = "scripted"\n', encoding="utf-8")
    out = CliRunner().invoke(serve, ["--config", str(config)])
    assert out.exit_code == 0, out.output
    assert seen and seen[0] > 1000
    assert gc.get_freeze_count() == 0
