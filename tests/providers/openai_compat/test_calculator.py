"""``--backend openai`` with the calculator: on with the few-shot preset, the probe passed through.

Against the fake server on localhost (a deterministic model that gets 15 + 27 wrong, on a server
that trims stop strings and says nothing about which one matched, as llama-server's and
llama-cpp-python's ``/v1/completions`` do), and against the real llama-cpp-python server on
Gemma 3 270M (the session's ``llama_server`` fixture of ``conftest.py``).
"""

from __future__ import annotations

import pytest

from providers.openai_compat import OpenAIProvider
from providers.openai_compat.backend import ServerCalculator, openai_backend
from rebase_agent import ProviderError, StepRequest
from rebase_agent.calculator import TRIGGER, calculating, writes_value
from rebase_agent.claims import open_value
from rebase_agent.presets import PRESETS
from tests.providers.openai_compat.fake_models import bad_adder
from tests.providers.openai_compat.fake_server import Flavor, serve

pytestmark = pytest.mark.anyio


def arithmetic(text: str) -> list[tuple[str, bool]]:
    """Each ``=`` of ``text`` after arithmetic a calculator reads: the text up to it, and
    whether the exact value follows."""
    out = []
    for i, char in enumerate(text):
        if char == TRIGGER:
            value = open_value(text[: i + 1])
            if value is not None:
                out.append((text[: i + 1], writes_value(text[i + 1 :], value)))
    return out


async def test_the_calculator_is_on_with_the_preset_the_probe_picks_for_a_base_model() -> None:
    app = bad_adder()
    async with serve(app) as url:
        provider, scorer = openai_backend(model="gemma-3-270m-base", base_url=url)
        assert isinstance(provider, ServerCalculator)
        async with provider:
            assert not calculating(provider)  # not decided before the probe
            await provider.prepare()
            assert provider.preset is PRESETS["few_shot_steps"] and calculating(provider)
            assert provider.search_defaults == PRESETS["few_shot_steps"].search_defaults
            probes = len(app.requests)
            (step,) = await provider.generate(
                StepRequest(problem="What is 15 + 27?", n=1, max_tokens=40, seed=1)
            )
        await scorer.aclose()  # type: ignore[attr-defined]
    assert step.text == "Step 1: 15 + 27 = 42.\n\n" and step.finish_reason == "step"
    sent = [r.body for r in app.requests[probes:] if r.path == "/v1/completions"]
    assert len(sent) == 2  # the step, then its continuation after the calculator's value
    assert sent[0]["stop"] == ["\n\n"]  # the whole step: no "=" stop the server would hide
    assert sent[1]["prompt"].endswith("What is 15 + 27?\nAnswer:\n\nStep 1: 15 + 27 = 42")


async def test_the_calculator_stays_off_when_the_probe_picks_a_chat_preset() -> None:
    app = bad_adder()
    async with serve(app) as url:
        provider, _ = openai_backend(model="gemma-3-270m-it", base_url=url, scorer="none")
        async with provider:
            await provider.prepare()
            assert provider.mode == "chat_prefill" and provider.preset is PRESETS["chat_steps"]
            assert not calculating(provider)
            (step,) = await provider.generate(StepRequest(problem="What is 15 + 27?", n=1))
    assert step.text.startswith("Step 1: 15 + 27 = 32.")  # the model's own value, untouched


def test_the_option_and_the_preset_decide_it_before_any_request() -> None:
    url = "http://127.0.0.1:9/v1"
    named, _ = openai_backend(model="m", base_url=url, template="few_shot_steps")
    assert isinstance(named, ServerCalculator) and calculating(named)
    assert named.method == "correct"
    plain, _ = openai_backend(model="m", base_url=url, template="plain")
    assert isinstance(plain, OpenAIProvider)
    off, _ = openai_backend(model="m", base_url=url, template="few_shot_steps", calculator="off")
    assert isinstance(off, OpenAIProvider)
    on, _ = openai_backend(model="m", base_url=url, template="plain", calculator="on")
    assert isinstance(on, ServerCalculator) and calculating(on)
    chat, _ = openai_backend(model="m", base_url=url, mode="chat_prefill")
    assert isinstance(chat, OpenAIProvider)  # the probe will pick chat_steps
    unprobed, _ = openai_backend(model="m", base_url=url, probe="off")
    assert isinstance(unprobed, OpenAIProvider)  # the plain template
    with pytest.raises(ValueError, match="option calculator must be on or off, got 'maybe'"):
        openai_backend(model="m", calculator="maybe")
    with pytest.raises(ValueError, match="calculator=on continues a step in place"):
        openai_backend(model="m", calculator="on", mode="chat_next_step", template="chat_steps")


async def test_calculator_on_where_the_probe_finds_no_way_to_continue_a_step_is_refused() -> None:
    app = bad_adder(prefill=False)
    app.flavor = Flavor(stop_style="none", completions=False)  # chat only, no prefill
    async with serve(app) as url:
        provider, _ = openai_backend(model="m-it", base_url=url, calculator="on", scorer="none")
        async with provider:
            with pytest.raises(ProviderError, match="probe chose mode chat_next_step"):
                await provider.generate(StepRequest(problem="What is 15 + 27?"))


async def test_the_probe_error_comes_through_the_calculator() -> None:
    provider, _ = openai_backend(model="m", base_url="http://127.0.0.1:9/v1", scorer="none")
    assert isinstance(provider, ServerCalculator)
    async with provider:
        with pytest.raises(ProviderError, match="probe: cannot reach"):
            await provider.prepare()


@pytest.mark.llama
@pytest.mark.slow
async def test_over_llama_cpp_pythons_server_every_value_after_equals_is_exact(
    llama_server: str,
) -> None:
    provider, _ = openai_backend(model="gemma", base_url=llama_server, scorer="none")
    assert isinstance(provider, ServerCalculator)
    problem = "What is 15 + 27?"
    async with provider:
        await provider.prepare()
        assert provider.preset is PRESETS["few_shot_steps"] and calculating(provider)
        # One request per child (this server ignores n), seeds 5 to 10; without the calculator
        # the sixth writes "Step 1: 15 + 27 = 29." and the others no arithmetic it can read.
        steps = await provider.generate(
            StepRequest(problem=problem, n=6, max_tokens=48, seed=5, temperature=0.7)
        )
        assert provider.report is not None and provider.report.stop == "trimmed"
    texts = [step.text for step in steps]
    assert len(texts) == 6
    claims = [claim for text in texts for claim in arithmetic(text)]
    assert claims, texts  # else this test checks nothing
    assert all(exact for _, exact in claims), texts
    assert all(step.completion_tokens > 0 for step in steps)
