from __future__ import annotations

import os
import subprocess
import sys

from rebase_agent.seeds import stable_seed


def test_a_stable_seed_depends_only_on_its_parts() -> None:
    seed = stable_seed(7, "problem", ("a", "b"), None)
    assert seed == stable_seed(7, "problem", ("a", "b"), None)
    assert 0 <= seed < 2**32
    assert len({stable_seed(7, "problem", i) for i in range(100)}) == 100
    assert stable_seed("ab", "c") != stable_seed("a", "bc")  # parts are kept apart


def test_a_stable_seed_is_the_same_in_another_process() -> None:
    code = "from rebase_agent.seeds import stable_seed; print(stable_seed(1, 'x', 2.5))"
    seeds = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        seeds.add(int(out.stdout))
    assert seeds == {stable_seed(1, "x", 2.5)}
