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
        "--backend",
        "scripted",
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
    assert first.stderr.count("is a test double") == 1
    assert "note: backend 'scripted' is a test double (a scripted policy, no model)" in first.stderr
    again = CliRunner().invoke(cli, args)
    assert "0 search(es) written, 12 already done" in again.output
    rows = read_rows([out])
    assert rows[0].result.config.balance_temperature == 0.1 and rows[0].result.config.seed == 0
    assert all(r.double for r in rows)

    png, summary = tmp_path / "curve.png", tmp_path / "summary.json"
    rep = CliRunner().invoke(
        cli, ["report", str(out), "--params", "270M", "--png", str(png), "--json", str(summary)]
    )
    assert rep.exit_code == 0, rep.output
    assert "== best-of-n ==" in rep.output and "sampling" in rep.output
    assert "== any finished path right (pass@N) ==" in rep.output
    assert "rebase (test double)" in rep.output and "sampling (test double)" in rep.output
    assert "ran on a test double (no model): their accuracy means nothing" in rep.output
    assert png.stat().st_size > 5_000
    data = json.loads(summary.read_text())
    assert data["params"] == 270e6 and len(data["cells"]) == 2 * 3 * 4  # x 3 votes and pass@N
    assert all(c["double"] for c in data["cells"])

    show = CliRunner().invoke(cli, ["show", str(out), "--problem", "0"])
    assert show.exit_code == 2 and "--strategy rebase --budget 4" in show.output
    page = tmp_path / "t.html"
    show = CliRunner().invoke(
        cli, ["show", str(out), "--problem", "0", "--strategy", "sampling", "--html", str(page)]
    )
    assert show.exit_code == 0, show.output
    assert "[0] root w=4" in show.output and "<details" in page.read_text()
    assert "(scripted, a test double)" in show.output


def test_malformed_dataset_stops_before_any_search(cli: click.Group, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "a", "answer": "1"}\n{"question": "b"\n')
    out = tmp_path / "o.jsonl"
    args = ["eval", str(data), "-o", str(out), "--no-progress", "--backend", "scripted"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1 and f"{data}:2: bad JSON" in res.output
    assert not out.exists()
    res = CliRunner().invoke(cli, [*args, "--skip-invalid", "--budgets", "1"])
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
            f'strategies = ["rebase"]\nbudgets = [1, 2]\noutput = "{out}"\nbackend = "scripted"\n'
            f'[dataset]\nsource = "{gsm8k_path}"\nlimit = 5\n[config]\nseed = 4\n'
        )
    else:
        text = (
            f"strategies: [rebase]\nbudgets: [1, 2]\noutput: {out}\nbackend: scripted\n"
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
    assert all(r.double for r in rows)
    assert "backend 'arithmetic-sim' is a test double (a simulated arithmetic policy" in res.stderr


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
        assert {(r.label, r.double) for r in read_rows([out])} == {("mine", False)}
        assert "test double" not in res.stderr
        res = CliRunner().invoke(
            cli, ["eval", str(gsm8k_path), "--backend", "nope", "-o", str(out)]
        )
        assert res.exit_code == 2 and "unknown backend 'nope'" in res.output
    finally:
        del _REGISTERED["mine"]


def test_eval_defaults_to_the_embedded_model(
    cli: click.Group, gsm8k_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --backend, eval builds ``llama`` (as solve does), never a test double. The
    model itself is not loaded here: the lookup is recorded and answered with a stand-in."""
    import rebase_agent.cli_eval as cli_eval
    from rebase_agent.backends import DEFAULT_BACKEND, is_double, load_backend
    from rebase_agent.evaluation.datasets import DatasetSpec
    from rebase_agent.evaluation.settings import EvalSettings

    assert DEFAULT_BACKEND == "llama" and not is_double(DEFAULT_BACKEND)
    settings = EvalSettings(dataset=DatasetSpec(source="d.jsonl"), output=tmp_path / "o.jsonl")
    assert settings.backend == "llama" and not settings.on_double()
    looked_up: list[str] = []

    def lookup(name: str) -> object:
        looked_up.append(name)
        return load_backend("scripted")  # a stand-in for the model, under the llama name

    monkeypatch.setattr(cli_eval, "_backend", lookup)
    out = tmp_path / "o.jsonl"
    args = ["eval", str(gsm8k_path), "--limit", "1", "--budgets", "1", "-o", str(out)]
    res = CliRunner().invoke(cli, [*args, "--strategy", "rebase", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert looked_up == ["llama"]
    assert "test double" not in res.output
    assert [(r.label, r.double) for r in read_rows([out])] == [("llama", False)]
    help_text = CliRunner().invoke(cli, ["eval", "--help"]).output
    assert "default llama" in help_text and "scripted" not in help_text


def test_rows_written_before_the_double_field_still_load(tmp_path: Path) -> None:
    from rebase_agent import RebaseConfig, SearchResult
    from rebase_agent.evaluation.results import EvalRow

    result = SearchResult(
        problem="p",
        strategy="rebase",
        config=RebaseConfig(budget=1),
        answer=None,
        solution=None,
        chosen=None,
    )
    row = EvalRow(
        run="r",
        label="old",
        dataset="d",
        problem_id="0",
        question="p",
        gold="1",
        strategy="rebase",
        budget=1,
        outcomes=[],
        stopped="done",
        wall_s=0.0,
        result=result,
    )
    old = json.loads(row.model_dump_json())
    del old["double"]
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(old) + "\n")
    assert [r.double for r in read_rows([path])] == [False]


def test_report_reads_compressed_results_and_eval_refuses_to_append_to_them(
    cli: click.Group, gsm8k_path: Path, tmp_path: Path
) -> None:
    import gzip

    out = tmp_path / "g.jsonl"
    base = ["eval", str(gsm8k_path), "--limit", "2", "--budgets", "1,2", "--backend", "scripted"]
    ran = CliRunner().invoke(cli, [*base, "-o", str(out), "--no-progress"])
    assert ran.exit_code == 0, ran.output
    packed = tmp_path / "g.jsonl.gz"
    packed.write_bytes(gzip.compress(out.read_bytes()))
    plain = CliRunner().invoke(cli, ["report", str(out), "--json", str(tmp_path / "a.json")])
    zipped = CliRunner().invoke(cli, ["report", str(packed), "--json", str(tmp_path / "b.json")])
    assert plain.exit_code == 0 and zipped.exit_code == 0, zipped.output
    assert (
        json.loads((tmp_path / "a.json").read_text())["cells"]
        == json.loads((tmp_path / "b.json").read_text())["cells"]
    )
    assert [r.key for r in read_rows([packed])] == [r.key for r in read_rows([out])]
    named = CliRunner().invoke(cli, ["report", str(packed)])  # default outputs: g.summary.json
    assert named.exit_code == 0, named.output
    assert (tmp_path / "g.summary.json").exists() and (tmp_path / "g.png").exists()

    refused = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "new.jsonl.gz")])
    assert refused.exit_code == 2, refused.output
    assert "new.jsonl.gz" in refused.output and "cannot take" in refused.output
    assert not (tmp_path / "new.jsonl.gz").exists()

    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip")
    bad = CliRunner().invoke(cli, ["report", str(tmp_path / "bad.jsonl.gz")])
    assert bad.exit_code != 0 and "bad.jsonl.gz: cannot read" in bad.output


def test_report_pairs_with_the_baseline_asked_for(
    cli: click.Group, gsm8k_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "g.jsonl"
    base = ["eval", str(gsm8k_path), "--limit", "2", "--budgets", "1,2", "--backend", "scripted"]
    strategies = ["--strategy", "rebase", "--strategy", "sampling", "--strategy", "beam"]
    ran = CliRunner().invoke(cli, [*base, *strategies, "-o", str(out), "--no-progress"])
    assert ran.exit_code == 0, ran.output
    default = CliRunner().invoke(cli, ["report", str(out), "--no-plot"])
    assert default.exit_code == 0, default.output
    assert "paired with sampling" in default.output and "Δ rebase" in default.output
    summary = tmp_path / "s.json"
    paired = CliRunner().invoke(
        cli, ["report", str(out), "--no-plot", "--baseline", "rebase", "--json", str(summary)]
    )
    assert paired.exit_code == 0, paired.output
    assert "paired with rebase" in paired.output
    assert "Δ sampling" in paired.output and "Δ beam" in paired.output
    assert "Δ rebase" not in paired.output
    data = json.loads(summary.read_text())
    assert data["baseline"] == "rebase"
    assert {c["strategy"] for c in data["comparisons"]} == {"sampling", "beam"}
    assert {c["baseline"] for c in data["comparisons"]} == {"rebase"}

    missing = CliRunner().invoke(cli, ["report", str(out), "--no-plot", "--baseline", "mcts"])
    assert missing.exit_code == 2
    assert "'mcts' did not run in these results (they hold beam, rebase, sampling)" in (
        missing.output
    )
