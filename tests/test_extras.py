"""What the core needs, and what a missing extra says."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from rebase_agent import cli


def test_the_core_solves_without_the_http_providers_dependencies() -> None:
    # `openai` and `tenacity` are the `openai` extra's: the core and its CLI must not need them.
    script = textwrap.dedent(
        """
        import sys
        from importlib.abc import MetaPathFinder

        class Missing(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"openai", "tenacity", "aiohttp", "httpx"}:
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, Missing())
        from click.testing import CliRunner
        from rebase_agent.cli import main

        out = CliRunner().invoke(main, ["solve", "What is 6 * 7?", "--backend", "scripted",
                                        "--budget", "4", "--seed", "1"])
        assert out.exit_code == 0, out.output
        assert out.stdout.startswith("answer: "), out.stdout
        assert not any(m.split(".")[0] in {"openai", "tenacity"} for m in sys.modules)
        print("ok")
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("ok")


class _MissingExtra:
    name = "probe"

    def load(self) -> object:
        raise ModuleNotFoundError("No module named 'openai'")


def test_a_command_whose_extra_is_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "entry_points", lambda group: [_MissingExtra()])
    out = CliRunner().invoke(cli.main, ["probe", "--help"])
    assert out.exit_code == 1
    assert "No module named 'openai'" in out.output
    assert "python -m pip install 'rebase-agent[openai]'" in out.output
