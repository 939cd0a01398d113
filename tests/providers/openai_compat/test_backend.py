"""``--backend openai`` builds the provider and scorer from string options."""

from __future__ import annotations

import pytest

from providers.openai_compat import JudgeScorer, OpenAIProvider, QwenPRMScorer
from providers.openai_compat.backend import openai_backend
from rebase_agent.backends import backend_names, load_backend


def test_the_backend_is_registered_by_name() -> None:
    assert "openai" in backend_names()
    assert load_backend("openai") is openai_backend


def test_options_build_provider_and_scorer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-test-not-a-real-key")
    provider, scorer = openai_backend(
        model="m",
        base_url="http://127.0.0.1:9/v1,http://127.0.0.1:10/v1",
        mode="chat_prefill",
        server="vllm",
        scorer="qwen_prm",
        scorer_model="prm",
        api_key_env="MY_KEY",
    )
    assert isinstance(provider, OpenAIProvider) and provider.mode == "chat_prefill"
    assert len(provider.endpoints.endpoints) == 2
    assert isinstance(scorer, QwenPRMScorer) and scorer.model == "prm"
    assert "sk-test-not-a-real-key" not in repr(provider) + repr(scorer)
    _, judge = openai_backend(model="m")
    assert isinstance(judge, JudgeScorer) and judge.model == "m"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs --option model=NAME"),
        ({"model": "m", "mode": "raw"}, "mode must be one of"),
        ({"model": "m", "server": "tgi"}, "server must be one of"),
        ({"model": "m", "scorer": "orm"}, "scorer must be one of"),
        ({"model": "m", "api_key": "sk-1"}, "unknown openai backend options ['api_key']"),
        ({"model": "m", "supports_n": "maybe"}, "supports_n must be auto, on or off, got 'maybe'"),
        ({"model": "m", "batch_prompts": "x"}, "batch_prompts must be auto, on or off, got 'x'"),
        (
            {"model": "m", "probe": "off", "mode": "chat_prefill", "batch_prompts": "on"},
            "batch_prompts=True needs mode='completions'",
        ),
    ],
)
def test_bad_options_are_named(options: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as info:
        openai_backend(**options)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("server", "supports_n", "sent"),
    [
        ("llama_server", "auto", None),  # detected at the first request (or probed)
        ("llama_server", "off", False),
        ("llama_server", "on", True),
        ("vllm", "auto", None),  # detected at the first request
        ("vllm", "off", False),
    ],
)
def test_supports_n_is_decided_per_server_unless_given(
    server: str, supports_n: str, sent: bool | None
) -> None:
    provider, _ = openai_backend(model="m", server=server, probe="off", supports_n=supports_n)
    assert isinstance(provider, OpenAIProvider)
    assert [e.supports_n for e in provider.endpoints.endpoints] == [sent]


@pytest.mark.parametrize(
    ("server", "batch_prompts", "batching"),
    [
        ("vllm", "auto", True),
        ("sglang", "auto", True),
        ("generic", "auto", False),
        ("vllm", "off", False),
        ("generic", "on", True),
    ],
)
def test_batch_prompts_is_decided_per_server_unless_given(
    server: str, batch_prompts: str, batching: bool
) -> None:
    provider, _ = openai_backend(model="m", server=server, probe="off", batch_prompts=batch_prompts)
    assert isinstance(provider, OpenAIProvider) and provider.batching is batching
