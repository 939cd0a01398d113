"""A run killed mid-way (SIGKILL, no clean-up) and started again: every search exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from rebase_agent.evaluation.results import read_rows

_SCRIPT = """
import sys
from pathlib import Path
import anyio
from rebase_agent.evaluation import DatasetSpec, EvalSettings, run_eval
from rebase_agent.testing import ScriptedProvider, ScriptedScorer


class HangsAfterTwoProblems(ScriptedProvider):
    # Answers the first two problems it sees; every request of another hangs forever.

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    async def generate(self, request):
        if request.problem not in self.seen:
            self.seen.append(request.problem)
        if self.seen.index(request.problem) >= 2:
            await anyio.sleep_forever()
        return await super().generate(request)


settings = EvalSettings(
    dataset=DatasetSpec(source=sys.argv[1], limit=10), output=Path(sys.argv[2]),
    budgets=[1, 2], max_concurrent_problems=2, config={"seed": 3}, backend="scripted",
)
provider = HangsAfterTwoProblems() if sys.argv[3] == "hang" else ScriptedProvider()
anyio.run(lambda: run_eval(settings, provider=provider, scorer=ScriptedScorer()))
"""


def _run(data: Path, out: Path, provider: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, str(data), str(out), provider],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_killed_run_resumes_without_duplicates_or_losses(gsm8k_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed.jsonl"
    # The first run finishes two problems' searches (6 rows) and then hangs, so it is killed
    # mid-run by construction, not by timing.
    proc = _run(gsm8k_path, out, "hang")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 4:
            break
        time.sleep(0.02)
    running = proc.poll() is None
    if running:
        os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    assert running, err.decode()
    before = read_rows([out])
    assert 4 <= len(before) <= 6
    done = _run(gsm8k_path, out, "plain")
    _, err = done.communicate(timeout=120)
    assert done.returncode == 0, err.decode()
    keys = Counter(r.key for r in read_rows([out]))
    assert len(keys) == 10 * 3 and set(keys.values()) == {1}  # rebase@1, rebase@2, sampling@2
    rows = {r.key: r for r in read_rows([out])}
    assert all(rows[r.key] == r for r in before)  # finished rows were kept as they were
