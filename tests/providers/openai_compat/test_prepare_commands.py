"""``rebase-agent eval``, ``serve`` and ``mcp`` probe the server before any search.

A server that cannot run one (here: nothing listening) fails the command with the probe's reason,
and no results file is written; a server that can (the fake server on localhost) gets the preset
the probe chose, with its search fields and the calculator, in eval rows and in server routes.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from rebase_agent.cli import main
from rebase_agent.evaluation.results import read_rows
from rebase_agent.presets import PRESETS
from rebase_server.app import create_app, prepare_app
from rebase_server.cli import mcp, serve
from rebase_server.config import ConfigError, RouteConfig, ServerConfig
from tests.providers.openai_compat.fake_models import bad_adder
from tests.providers.openai_compat.fake_server import serve as serve_fake

pytestmark = pytest.mark.anyio

DEAD = "http://127.0.0.1:9/v1"
"""A base URL with nothing listening (the discard port)."""


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "sums.jsonl"
    path.write_text(json.dumps({"id": "s1", "question": "What is 15 + 27?", "answer": "42"}) + "\n")
    return path


def eval_args(dataset: Path, out: Path, base_url: str) -> list[str]:
    return [
        "eval",
        str(dataset),
        "--strategy",
        "rebase",
        "--budgets",
        "1",
        "--backend",
        "openai",
        "--option",
        "model=gemma-3-270m-base",
        "--option",
        f"base_url={base_url}",
        "--option",
        "scorer=none",
        "--check",
        "none",
        "--seed",
        "0",
        "-o",
        str(out),
        "--no-progress",
    ]


def test_eval_fails_on_a_server_it_cannot_reach_before_any_search(
    dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(main, eval_args(dataset, out, DEAD))
    assert result.exit_code == 1, result.output
    assert f"probe: cannot reach {DEAD}" in result.output
    assert "no search was run" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


async def test_eval_probes_the_server_then_runs_with_its_preset_and_the_calculator(
    dataset: Path, tmp_path: Path
) -> None:
    app = bad_adder()
    out = tmp_path / "rows.jsonl"
    async with serve_fake(app) as url:
        result = await anyio.to_thread.run_sync(
            lambda: CliRunner().invoke(main, eval_args(dataset, out, url))
        )
    assert result.exit_code == 0, result.output
    (row,) = read_rows([out])
    # The fields of the preset the probe chose apply (its steps are short: 48 tokens).
    preset = PRESETS["few_shot_steps"].search_defaults
    assert row.result.config.max_step_tokens == preset["max_step_tokens"]
    assert row.result.config.max_depth == preset["max_depth"]
    # The model wrote 15 + 27 = 32; the calculator wrote 42 and the model went on from there.
    assert row.result.solution.startswith("Step 1: 15 + 27 = 42.")
    assert row.result.answer == "42"
    assert {g.answer: g.correct for g in row.grades}["42"] is True
    probes = [r for r in app.requests if r.path == "/v1/models"]
    assert len(probes) == 1  # probed once, for the whole run


def write_route(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "routes.toml"
    path.write_text(
        "[routes.gemma]\n"
        'backend = "openai"\n'
        f'options = {{ model = "gemma-3-270m-base", base_url = "{base_url}", scorer = "none" }}\n'
    )
    return path


def test_serve_fails_on_a_server_it_cannot_reach_before_binding_the_port(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        serve, ["--config", str(write_route(tmp_path, DEAD)), "--port", "0"]
    )
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"routes.gemma: probe: cannot reach {DEAD}" in lines[0] and "not serving" in lines[0]


def test_mcp_fails_on_a_server_it_cannot_reach_before_serving(tmp_path: Path) -> None:
    pytest.importorskip("mcp")
    result = CliRunner().invoke(mcp, ["--config", str(write_route(tmp_path, DEAD))])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"routes.gemma: probe: cannot reach {DEAD}" in lines[0] and "not serving" in lines[0]


async def test_a_served_route_takes_the_search_fields_of_the_preset_the_probe_chose() -> None:
    app = bad_adder()
    async with serve_fake(app) as url:
        options = {"model": "gemma-3-270m-base", "base_url": url, "scorer": "none"}
        config = ServerConfig(
            routes={"gemma": RouteConfig(backend="openai", options=options, search={"budget": 2})}
        )
        served = create_app(config)
        route = served.state.server.searches["gemma"]
        assert route.config.max_step_tokens != 48  # not known before the probe
        await prepare_app(served)
        await prepare_app(served)  # once: the second call sends nothing
        search = served.state.server.searches["gemma"]
        assert search.provider is route.provider and search.scorer is route.scorer
        assert search.config.max_step_tokens == 48 and search.config.budget == 2
        assert search.provider.preset is PRESETS["few_shot_steps"]
        for part in (search.provider, search.scorer):
            close = getattr(part, "aclose", None)
            if close is not None:
                await close()
    assert len([r for r in app.requests if r.path == "/v1/models"]) == 1


async def test_prepare_app_names_the_route_whose_server_fails() -> None:
    options = {"model": "m", "base_url": DEAD, "scorer": "none"}
    config = ServerConfig(routes={"far": RouteConfig(backend="openai", options=options)})
    with pytest.raises(ConfigError, match=r"^routes\.far: probe: cannot reach"):
        await prepare_app(create_app(config))
