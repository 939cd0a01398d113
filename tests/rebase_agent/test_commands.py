"""What the commands share: their event loop, and the heap frozen while their searches run."""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import ClassVar

import click
import pytest
from click.testing import CliRunner

from rebase_agent import StepCompletion, StepRequest
from rebase_agent.backends import register_backend
from rebase_agent.cli import main
from rebase_agent.commands import EVENT_LOOP_VARIABLE, frozen_startup_heap, run_command
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


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_commands_run_on_uvloop_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    monkeypatch.delenv(EVENT_LOOP_VARIABLE, raising=False)
    assert run_command(_loop_module).startswith("uvloop")
    monkeypatch.setenv(EVENT_LOOP_VARIABLE, " UVLOOP ")
    assert run_command(_loop_module).startswith("uvloop")


def test_the_environment_can_choose_asyncios_own_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_VARIABLE, "asyncio")
    assert run_command(_loop_module).startswith("asyncio")


def test_without_uvloop_commands_run_on_asyncio_unless_uvloop_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    monkeypatch.delenv(EVENT_LOOP_VARIABLE, raising=False)
    assert run_command(_loop_module).startswith("asyncio")
    monkeypatch.setenv(EVENT_LOOP_VARIABLE, "uvloop")
    with pytest.raises(
        click.UsageError, match=r"REBASE_AGENT_EVENT_LOOP=uvloop, but uvloop is not"
    ):
        run_command(_loop_module)


def test_an_unknown_loop_is_refused_with_the_variable_and_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(EVENT_LOOP_VARIABLE, "trio")
    with pytest.raises(
        click.UsageError, match=r"REBASE_AGENT_EVENT_LOOP must be uvloop or asyncio, got 'trio'"
    ):
        run_command(_loop_module)


def test_run_command_returns_what_main_returned_on_a_frozen_heap() -> None:
    async def main() -> int:
        return gc.get_freeze_count()

    assert run_command(main) > 1000
    assert gc.get_freeze_count() == 0


def test_solve_runs_on_the_chosen_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    loops: list[str] = []

    class _LoopRecorder(ScriptedProvider):
        async def generate(self, request: StepRequest) -> list[StepCompletion]:
            loops.append(await _loop_module())
            return await super().generate(request)

    register_backend(
        "loop-recorder", lambda **_: (_LoopRecorder(depth=2), ScriptedScorer()), double="a test"
    )
    for chosen in ("uvloop", "asyncio"):
        monkeypatch.setenv(EVENT_LOOP_VARIABLE, chosen)
        loops.clear()
        out = CliRunner().invoke(
            main, ["solve", "What is 2 + 2?", "--budget", "2", "--backend", "loop-recorder"]
        )
        assert out.exit_code == 0, out.output
        assert loops and all(module.startswith(chosen) for module in loops), loops
