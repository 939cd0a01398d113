from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rebase_agent.cli_eval import register
from rebase_agent.evaluation.results import read_rows


@pytest.fixture
def cli() -> click.Group:
    group = click.Group("rebase-agent")
    register(group)
    return group


def test_eval_report_show_end_to_end(cli: click.Group, gsm8k_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "g.jsonl"
    args = [
        "eval",
        str(gsm8k_path),
        "--limit",
        "3",
        "--budgets",
        "1,2,4",
        "--strategy",
        "rebase",
        "--strategy",
        "sampling",
        "--option",
        "answers=18,3,70000",
        "--seed",
        "0",
        "--set",
        "balance_temperature=0.1",
        "-o",
        str(out),
        "--no-progress",
    ]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "12 search(es) written, 0 already done, 0 failed, of 12 (3 problems)" in first.output
    again = CliRunner().invoke(cli, args)
    assert "0 search(es) written, 12 already done" in again.output
    rows = read_rows([out])
    assert rows[0].result.config.balance_temperature == 0.1 and rows[0].result.config.seed == 0

    png, summary = tmp_path / "curve.png", tmp_path / "summary.json"
    rep = CliRunner().invoke(
        cli, ["report", str(out), "--params", "270M", "--png", str(png), "--json", str(summary)]
    )
    assert rep.exit_code == 0, rep.output
    assert "== best-of-n ==" in rep.output and "sampling" in rep.output
    assert png.stat().st_size > 5_000
    data = json.loads(summary.read_text())
    assert data["params"] == 270e6 and len(data["cells"]) == 2 * 3 * 3

    show = CliRunner().invoke(cli, ["show", str(out), "--problem", "0"])
    assert show.exit_code == 2 and "--strategy rebase --budget 4" in show.output
    page = tmp_path / "t.html"
    show = CliRunner().invoke(
        cli, ["show", str(out), "--problem", "0", "--strategy", "sampling", "--html", str(page)]
    )
    assert show.exit_code == 0, show.output
    assert "[0] root w=4" in show.output and "<details" in page.read_text()


def test_malformed_dataset_stops_before_any_search(cli: click.Group, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "a", "answer": "1"}\n{"question": "b"\n')
    out = tmp_path / "o.jsonl"
    res = CliRunner().invoke(cli, ["eval", str(data), "-o", str(out), "--no-progress"])
    assert res.exit_code == 1 and f"{data}:2: bad JSON" in res.output
    assert not out.exists()
    res = CliRunner().invoke(
        cli,
        ["eval", str(data), "-o", str(out), "--no-progress", "--skip-invalid", "--budgets", "1"],
    )
    assert res.exit_code == 0, res.output
    assert "skipped 1 malformed row(s): line 2" in res.output
    assert len(read_rows([out])) == 2


@pytest.mark.parametrize("kind", ["toml", "yaml"])
def test_config_file_with_flag_overrides(
    cli: click.Group, gsm8k_path: Path, tmp_path: Path, kind: str
) -> None:
    out = tmp_path / "o.jsonl"
    if kind == "toml":
        text = (
            f'strategies = ["rebase"]\nbudgets = [1, 2]\noutput = "{out}"\n'
            f'[dataset]\nsource = "{gsm8k_path}"\nlimit = 5\n[config]\nseed = 4\n'
        )
    else:
        text = (
            f"strategies: [rebase]\nbudgets: [1, 2]\noutput: {out}\n"
            f"dataset: {{source: {gsm8k_path}, limit: 5}}\nconfig: {{seed: 4}}\n"
        )
    cfg = tmp_path / f"eval.{kind}"
    cfg.write_text(text)
    res = CliRunner().invoke(
        cli, ["eval", "--config", str(cfg), "--limit", "2", "--budgets", "2", "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    rows = read_rows([out])
    assert sorted(r.key for r in rows) == [("0", "rebase", 2), ("1", "rebase", 2)]
    assert rows[0].result.config.seed == 4
    bad = tmp_path / "bad.toml"
    bad.write_text('budgets = "many"\n')
    res = CliRunner().invoke(cli, ["eval", str(gsm8k_path), "--config", str(bad), "-o", str(out)])
    assert res.exit_code == 2 and "budgets" in res.output


def test_arithmetic_sim_backend_with_its_verifier(cli: click.Group, tmp_path: Path) -> None:
    from rebase_agent.evaluation.arithmetic import generate_chains, write_chains

    data = tmp_path / "chains.jsonl"
    write_chains(generate_chains(3, seed=1), data)
    out = tmp_path / "o.jsonl"
    res = CliRunner().invoke(
        cli,
        [
            "eval",
            str(data),
            "--field",
            "id=id",
            "--backend",
            "arithmetic-sim",
            "--option",
            "accuracy=0.5",
            "--verifier",
            "arithmetic",
            "--budgets",
            "4",
            "--set",
            'step_delimiters=["\\n"]',
            "--set",
            "max_depth=5",
            "--set",
            "answer_equivalence=normalized",
            "-o",
            str(out),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = read_rows([out])
    assert {r.problem_id for r in rows} == {"chain-1-0", "chain-1-1", "chain-1-2"}
    assert all(c.answer is not None for r in rows for c in r.result.candidates)


def test_a_registered_backend_is_found_first(
    cli: click.Group, gsm8k_path: Path, tmp_path: Path
) -> None:
    from rebase_agent.backends import _REGISTERED, register_backend
    from rebase_agent.testing import ScriptedProvider, ScriptedScorer

    made: list[dict[str, str]] = []

    def factory(**options: str) -> tuple[ScriptedProvider, ScriptedScorer]:
        made.append(options)
        return ScriptedProvider(answers=["18"]), ScriptedScorer()

    register_backend("mine", factory)
    try:
        out = tmp_path / "o.jsonl"
        res = CliRunner().invoke(
            cli,
            [
                "eval",
                str(gsm8k_path),
                "--limit",
                "1",
                "--budgets",
                "1",
                "--backend",
                "mine",
                "--option",
                "k=v",
                "-o",
                str(out),
                "--no-progress",
            ],
        )
        assert res.exit_code == 0, res.output
        assert made == [{"k": "v"}]
        assert {r.label for r in read_rows([out])} == {"mine"}
        res = CliRunner().invoke(
            cli, ["eval", str(gsm8k_path), "--backend", "nope", "-o", str(out)]
        )
        assert res.exit_code == 2 and "unknown backend 'nope'" in res.output
    finally:
        del _REGISTERED["mine"]
