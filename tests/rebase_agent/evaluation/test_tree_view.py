from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from rebase_agent import RebaseConfig, SearchResult, solve
from rebase_agent.evaluation.tree_view import render_html, render_text
from rebase_agent.testing import FunctionProvider, ScriptedScorer

_EVIL = '<script>alert("x")</script> & <b>'


async def _result() -> SearchResult:
    def policy(request):  # type: ignore[no-untyped-def]
        k = len(request.steps)
        if k < 2:
            return [f"Step {k + 1}: {_EVIL} {i}\n\n" for i in range(request.n)]
        return [f"The answer is {4 + i % 2}." for i in range(request.n)]

    return await solve(
        "What is <2+2>?",
        provider=FunctionProvider(policy),
        scorer=ScriptedScorer(rules={"answer is 4": 0.9}),
        config=RebaseConfig(budget=4, seed=0),
    )


@pytest.mark.anyio
async def test_text_tree_shows_rewards_widths_statuses_and_the_choice() -> None:
    result = await _result()
    text = render_text(result, grades={"4": True, "5": False}, width=60)
    assert text.startswith("problem: What is <2+2>?")
    assert "[0] root w=4" in text
    assert "✔ finished answer=4 (right)" in text and "(wrong)" in text
    assert "★ chosen" in text and " ⏎" not in text.splitlines()[2]
    assert any(
        line.startswith(("├─ [", "└─ [")) and " w=" in line and " r=" in line
        for line in text.splitlines()
    )
    if any(n.status == "pruned" for n in result.nodes):
        assert "✂ pruned" in text


@pytest.mark.anyio
async def test_html_escapes_every_text() -> None:
    page = render_html(await _result(), gold="<4>", title="t <i>")
    assert "<script>alert" not in page and "&lt;script&gt;alert(&quot;x&quot;)" in page
    assert "What is &lt;2+2&gt;?" in page and "gold <b>&lt;4&gt;</b>" in page
    assert "<title>t &lt;i&gt;</title>" in page
    assert page.count("<details") == page.count("</details>") >= 1
    assert "http" not in page  # self-contained: no external resources


_CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args: str) -> str:
    assert _CHROMIUM is not None
    # No network here: keep Chromium from trying (updates, sync, first-run fetches).
    quiet = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [_CHROMIUM, *quiet, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(_CHROMIUM is None, reason="needs Debian's chromium")
@pytest.mark.anyio
async def test_html_renders_and_collapses_in_headless_chromium(tmp_path: Path) -> None:
    result = await _result()
    page = tmp_path / "tree.html"
    page.write_text(render_html(result), encoding="utf-8")
    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=900,700", page.as_uri())
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 5_000
    inner = [n.id for n in result.nodes if n.parent is not None and n.status == "expanded"]
    dom = _chromium("--dump-dom", page.as_uri())
    assert f'<details id="node-{inner[0]}" open="">' in dom and "&lt;script&gt;" in dom
    dom = _chromium("--dump-dom", f"{page.as_uri()}#collapse={inner[0]}")  # clicks its summary
    assert f'<details id="node-{inner[0]}">' in dom
    assert '<details id="node-0" open="">' in dom
