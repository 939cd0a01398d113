"""The probe and a solve against llama.cpp's own ``llama-server`` (``-np 16 -kvu``), the server
issue 17 was found on. Skipped unless the binary is found (``bash
benchmarks/build_llama_tools.sh`` builds it; ``REBASE_AGENT_LLAMA_SERVER`` names one).
"""

from __future__ import annotations

import openai
import pytest

from providers.openai_compat.backend import openai_backend
from providers.openai_compat.probe import probe_server
from rebase_agent import RebaseConfig, RebaseSearch
from rebase_agent.backends import aclose, prepare
from rebase_agent.calculator import calculating
from rebase_agent.presets import PRESETS

pytestmark = [pytest.mark.anyio, pytest.mark.llama, pytest.mark.slow]


async def test_probe_reads_llama_server(real_llama_server: str) -> None:
    async with openai.AsyncOpenAI(base_url=real_llama_server, api_key="x", timeout=120) as c:
        report = await probe_server(c, "gemma")
    assert report.fatal is None, report.table()
    assert report.server == "llama_server"
    assert (report.completions, report.n, report.usage) == ("yes", "yes", "one_choice")
    assert report.stop == "trimmed"
    # Its /completions logprobs come in the chat layout; the probe reads them.
    assert report.completions_top_logprobs >= 2, report.table()
    assert report.options()["template"] == "few_shot_steps"
    assert report.options()["scorer_api"] == "completions"


async def test_a_solve_with_the_probes_choices_finishes_and_states_answers(
    real_llama_server: str,
) -> None:
    provider, scorer = openai_backend(model="gemma", base_url=real_llama_server)
    try:
        await prepare(provider, scorer)
        assert provider.preset is PRESETS["few_shot_steps"]
        assert calculating(provider)
        search = RebaseSearch(provider, scorer, RebaseConfig(budget=4, seed=0, timeout_s=240))
        result = await search.solve("What is 6 * 7?")
    finally:
        await aclose(provider, scorer)
    assert result.stopped == "done"
    assert result.candidates and all(c.answer is not None for c in result.candidates)
    # The judge reads /completions logprobs: its scores are not all the 0.5 of a failed read.
    scores = {s for c in result.candidates for s in c.step_scores}
    assert len(scores) > 1, scores
