from __future__ import annotations

import pathlib
import re

import pytest

from rebase_agent import RebaseConfig

ROOT = pathlib.Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", README, re.DOTALL)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_ci_runs_the_readme_test_command() -> None:
    main_job, tests = readme_commands()
    assert "rebase-agent solve" in main_job
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci


def test_config_table_lists_every_field_with_its_default() -> None:
    for name, field in RebaseConfig.model_fields.items():
        row = re.search(rf"^\| `{name}` \| (.+?) \|", README, re.MULTILINE)
        assert row is not None, f"README config table lacks {name}"
        default = field.default
        shown = row.group(1).strip("`")
        if isinstance(default, tuple):
            assert shown == '("\\n\\n",)', name
        else:
            assert shown == str(default), (name, shown, default)


def test_the_quick_start_runs(capsys: pytest.CaptureFixture[str]) -> None:
    block = re.search(r"## Quick start.*?```python\n(.*?)```", README, re.DOTALL)
    assert block is not None
    exec(compile(block.group(1), "README quick start", "exec"), {})
    assert capsys.readouterr().out.startswith("42 [1, 16]")
