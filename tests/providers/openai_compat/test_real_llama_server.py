"""The probe and a solve against llama.cpp's own ``llama-server`` (``-np 16 -kvu``), the server
issue 17 was found on. Skipped unless the binary is found (``bash
benchmarks/build_llama_tools.sh`` builds it; ``REBASE_AGENT_LLAMA_SERVER`` names one).
"""

from __future__ import annotations

import anyio
import openai
import pytest

from providers.openai_compat import OpenAIProvider
from providers.openai_compat.backend import openai_backend
from providers.openai_compat.probe import probe_server
from rebase_agent import RebaseConfig, RebaseSearch, StepRequest
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


async def test_one_request_per_choice_is_served_while_other_clients_keep_slots_busy(
    four_slot_llama_server: str,
) -> None:
    """llama-server runs a request for n choices only when n slots are free at once: beside
    three clients that keep three of four slots busy, one request for four choices waited
    (not served in 20 s, while they were served 217 times). With ``supports_n=False`` the
    provider sends one request per choice, and the four come back as slots free up."""
    url = four_slot_llama_server
    stop = anyio.Event()

    async def busy_client(client: openai.AsyncOpenAI, i: int) -> None:
        while not stop.is_set():
            await client.completions.create(
                model="m", prompt=f"the answer {i}", max_tokens=300, extra_body={"ignore_eos": True}
            )

    async with (
        openai.AsyncOpenAI(base_url=url, api_key="x", timeout=60) as client,
        OpenAIProvider("m", url, server="llama_server", supports_n=False) as provider,
        anyio.create_task_group() as tg,
    ):
        for i in range(3):
            tg.start_soon(busy_client, client, i)
        await anyio.sleep(0.5)
        with anyio.fail_after(20):
            got = await provider.generate(StepRequest(problem="Question: 7", n=4, max_tokens=20))
        stop.set()
    assert len(got) == 4
    assert provider.endpoints.endpoints[0].supports_n is False
