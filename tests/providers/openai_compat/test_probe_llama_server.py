"""The probe against a real server: llama-cpp-python's, through ``providers.llamacpp.server``,
serving Gemma 3 270M (the session's ``llama_server`` fixture of ``conftest.py``).

Skipped without llama-cpp-python's server extra or the model package.
"""

from __future__ import annotations

import openai
import pytest

from providers.openai_compat.backend import openai_backend
from providers.openai_compat.probe import probe_server
from rebase_agent import StepRequest
from rebase_agent.presets import PRESETS

pytestmark = [pytest.mark.anyio, pytest.mark.llama, pytest.mark.slow]


async def test_probe_reads_llama_cpp_pythons_server(llama_server: str) -> None:
    async with openai.AsyncOpenAI(base_url=llama_server, api_key="x", timeout=120) as client:
        report = await probe_server(client, "gemma")
    assert report.fatal is None, report.table()
    assert report.server == "generic" and "llama-cpp-python" in report.server_seen
    assert report.completions == "yes" and report.chat == "yes"
    assert report.n == "no"  # this server returns one choice
    assert report.stop == "trimmed" and report.stop_field is None
    assert report.completions_top_logprobs == 5  # --logits_all true
    assert report.tokenizer == "extras_tokenize"
    assert (report.pooling, report.classify) == ("no", "no")
    options = report.options()
    assert options["mode"] == "completions" and options["template"] == "few_shot_steps"
    assert (options["scorer"], options["scorer_api"]) == ("judge", "completions")


async def test_the_backend_probes_and_prompts_the_base_model_with_worked_examples(
    llama_server: str,
) -> None:
    provider, scorer = openai_backend(model="gemma", base_url=llama_server)
    async with provider:
        await provider.prepare()
        assert provider.preset is PRESETS["few_shot_steps"]
        assert provider.search_defaults["max_step_tokens"] == 48
        got = await provider.generate(
            StepRequest(problem="What is 6 * 7?", n=2, max_tokens=24, seed=3, temperature=0.7)
        )
    await scorer.aclose()  # type: ignore[attr-defined]
    assert len(got) == 2
    assert all(c.completion_tokens > 0 for c in got)
