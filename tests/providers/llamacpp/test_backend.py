"""``--backend llama``: options parsing, building both parts, closing them."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from providers.llamacpp.backend import llama_backend
from providers.llamacpp.defaults import local_models
from providers.llamacpp.provider import LlamaCppProvider
from rebase_agent import ScoreRequest, StepRequest
from rebase_agent.calculator import CalculatorProvider

pytestmark = [pytest.mark.anyio, pytest.mark.llama]


async def test_backend_builds_a_shared_provider_and_scorer(tiny_gguf: Path) -> None:
    provider, scorer = llama_backend(
        model=str(tiny_gguf),
        n_ctx="512",
        scorer_n_ctx="512",
        n_seq_max="4",
        n_threads="2",
        n_ubatch="16",
    )
    assert scorer.model is provider.model  # one set of weights, two contexts
    assert provider.engine.n_ctx >= 512 and provider.engine.n_seq_max == 4
    assert provider.engine.n_ubatch == 16
    out = await provider.generate(StepRequest(problem="2+3?", n=2, max_tokens=4, seed=0))
    assert len(out) == 2
    [scores] = await scorer.score(ScoreRequest(problem="2+3?", solutions=(("5\n\n",),)))
    assert len(scores) == 1
    await provider.aclose()
    assert provider.model.contexts == 1  # the scorer still uses the weights
    await scorer.aclose()
    assert provider.model.contexts == 0


async def test_options_not_given_take_local_models_defaults(tiny_gguf: Path) -> None:
    defaults = inspect.signature(local_models).parameters
    provider, scorer = llama_backend(model=str(tiny_gguf), n_threads="1")
    try:
        assert provider.engine.n_seq_max == defaults["n_seq_max"].default == 128
        assert provider.engine.n_ctx >= defaults["n_ctx"].default
    finally:
        await provider.aclose()
        await scorer.aclose()


def test_backend_rejects_bad_options(tiny_gguf: Path) -> None:
    with pytest.raises(ValueError, match="unknown llama backend options"):
        llama_backend(model=str(tiny_gguf), colour="blue")
    with pytest.raises(ValueError, match="n_ctx must be an integer"):
        llama_backend(model=str(tiny_gguf), n_ctx="big")
    with pytest.raises(ValueError, match="chat must be on or off"):
        llama_backend(model=str(tiny_gguf), chat="maybe")
    with pytest.raises(ValueError, match="n_ubatch must be an integer, got 'many'"):
        llama_backend(model=str(tiny_gguf), n_ubatch="many")
    with pytest.raises(ValueError, match="n_ubatch must be at least 1, got -1"):
        llama_backend(model=str(tiny_gguf), n_ubatch="-1")
    with pytest.raises(ValueError, match="scorer must be"):
        llama_backend(model=str(tiny_gguf), scorer="oracle")
    with pytest.raises(ValueError, match="judge_prompt must be own or policy, got 'theirs'"):
        llama_backend(model=str(tiny_gguf), judge_prompt="theirs")
    with pytest.raises(ValueError, match="needs the judge on the policy's model"):
        llama_backend(model=str(tiny_gguf), judge_prompt="policy", scorer="math_shepherd")


async def test_the_judge_can_ask_after_the_policys_prompt(tiny_gguf: Path) -> None:
    provider, scorer = llama_backend(model=str(tiny_gguf), n_ctx="512", judge_prompt="policy")
    try:
        assert scorer.judge_prefix == provider.tokenize_prompt
        assert scorer.engine is provider.engine  # one context: the policy's cache is the judge's
    finally:
        await provider.aclose()
        await scorer.aclose()


def test_the_bundled_model_gets_worked_examples_and_others_the_plain_template(
    tiny_gguf: Path,
) -> None:
    from providers.llamacpp.templates import FEW_SHOT_STEPS_TEMPLATE

    assert "The answer is 14." in FEW_SHOT_STEPS_TEMPLATE
    assert FEW_SHOT_STEPS_TEMPLATE.endswith("Question: {problem}\nAnswer:\n\n{solution}")
    provider, scorer = llama_backend(model=str(tiny_gguf), n_ctx="512", scorer_n_ctx="512")
    try:
        prompt = provider.template.render("P?", "")
        assert "Step 1: 4 pens" not in prompt and prompt.endswith(
            "Question: P?\nAnswer: Let's think step by step.\n\n"
        )
        assert provider.search_defaults == {}  # another model: the library's defaults
    finally:
        provider.close()
        scorer.close()


def test_only_the_embedded_default_recommends_its_short_steps(
    monkeypatch: pytest.MonkeyPatch, tiny_gguf: Path
) -> None:
    import providers.llamacpp.backend as backend
    from providers.llamacpp.defaults import EMBEDDED_SEARCH_DEFAULTS, EMBEDDED_TOP_K

    # The bundled model's path is swapped for the tiny one: the backend's choice is the test.
    monkeypatch.setattr(backend, "default_model_path", lambda: str(tiny_gguf))
    wrapped, scorer = llama_backend(n_ctx="512", scorer_n_ctx="512")
    own, own_scorer = llama_backend(n_ctx="512", scorer_n_ctx="512", template="{problem}{solution}")
    # The embedded default writes its arithmetic with a calculator; the user's own prompt does not.
    assert isinstance(wrapped, CalculatorProvider)
    assert isinstance(own, LlamaCppProvider)
    provider = wrapped.provider
    assert isinstance(provider, LlamaCppProvider)
    try:
        assert wrapped.search_defaults == EMBEDDED_SEARCH_DEFAULTS
        assert EMBEDDED_SEARCH_DEFAULTS["max_step_tokens"] < 256
        assert provider.top_k == EMBEDDED_TOP_K > 0
        assert own.search_defaults == {}  # the user's own prompt: no recommendation
        assert own.top_k == 0
    finally:
        for part in (provider, scorer, own, own_scorer):
            part.close()


def test_the_calculator_option_turns_it_on_or_off_for_any_model(tiny_gguf: Path) -> None:
    on, on_scorer = llama_backend(model=str(tiny_gguf), n_ctx="512", calculator="on")
    off, off_scorer = llama_backend(model=str(tiny_gguf), n_ctx="512", calculator="false")
    try:
        assert isinstance(on, CalculatorProvider)
        assert isinstance(off, LlamaCppProvider)
        with pytest.raises(ValueError, match="calculator"):
            llama_backend(model=str(tiny_gguf), calculator="sometimes")
    finally:
        assert isinstance(on.provider, LlamaCppProvider)
        for part in (on.provider, on_scorer, off, off_scorer):
            part.close()
