from __future__ import annotations

import importlib
import types

import pytest

import rebase_agent
import rebase_agent.testing

CORE = (
    "AnswerExtractor",
    "AnswerVote",
    "ArithmeticScorer",
    "Candidate",
    "DepthStats",
    "FinishReason",
    "NodeRecord",
    "ProductScorer",
    "Provider",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderTimeout",
    "RebaseConfig",
    "RebaseError",
    "RebaseSearch",
    "ScoreRequest",
    "Scorer",
    "ScoringError",
    "SearchFailed",
    "SearchResult",
    "SearchTimeout",
    "StepCompletion",
    "StepRequest",
    "StrategyName",
    "Usage",
    "__version__",
    "allocate_widths",
    "extract_answer",
    "normalize_answer",
    "record_scorer_tokens",
    "solve",
    "with_check",
)

OPENAI_COMPAT = (
    "EndpointConnectionError",
    "EndpointHTTPError",
    "EndpointPool",
    "FormatTemplate",
    "JinjaChatTemplate",
    "JudgeScorer",
    "MathShepherdPoolingScorer",
    "MathShepherdScorer",
    "Mode",
    "OpenAIProvider",
    "ProbeReport",
    "PromptTemplate",
    "QwenPRMScorer",
    "RLHFlowScorer",
    "RetryPolicy",
    "Server",
    "ServerChatTemplate",
    "probe_server",
)
"""What users of the HTTP provider need: the provider and its types, the scorers, the templates,
retries and replicas, the errors a failed request raises, and the probe. No plumbing."""

LLAMACPP = (
    "DEFAULT_COMPLETION_TEMPLATE",
    "DEFAULT_JUDGE_TEMPLATE",
    "FEW_SHOT_STEPS_TEMPLATE",
    "FormatTemplate",
    "JinjaChatTemplate",
    "LlamaCppProvider",
    "LlamaCppScorer",
    "LlamaModel",
    "MemoryEstimate",
    "PromptTemplate",
    "check_memory",
    "default_model_path",
    "default_models",
    "estimate_memory",
    "local_models",
)
LLAMACPP_EARLIER_NAMES = {"ChatTemplate", "CompletionTemplate"}
"""Importable from ``providers.llamacpp`` under their earlier names, not listed in ``__all__``."""


def public_names(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


def test_all_lists_exactly_the_public_names() -> None:
    public = public_names(rebase_agent)
    assert set(rebase_agent.__all__) - {"__version__"} == public
    assert list(rebase_agent.__all__) == sorted(rebase_agent.__all__)


@pytest.mark.parametrize(
    ("package", "expected", "earlier"),
    [
        ("rebase_agent", CORE, set()),
        ("providers.openai_compat", OPENAI_COMPAT, set()),
        ("providers.llamacpp", LLAMACPP, LLAMACPP_EARLIER_NAMES),
    ],
)
def test_each_public_package_exports_exactly_its_surface(
    package: str, expected: tuple[str, ...], earlier: set[str]
) -> None:
    if package == "providers.llamacpp":
        pytest.importorskip("llama_cpp")
    module = importlib.import_module(package)
    assert tuple(module.__all__) == expected
    assert list(expected) == sorted(expected)
    assert public_names(module) == set(expected) - {"__version__"} | earlier
    for name in expected:
        assert getattr(module, name) is not None


def test_both_providers_export_the_cores_templates() -> None:
    pytest.importorskip("llama_cpp")
    import providers.llamacpp as llamacpp
    import providers.openai_compat as openai_compat
    import rebase_agent.templates as core

    assert llamacpp.FormatTemplate is core.FormatTemplate
    assert llamacpp.JinjaChatTemplate is core.JinjaChatTemplate
    assert llamacpp.PromptTemplate is openai_compat.PromptTemplate is core.PromptTemplate
    assert issubclass(openai_compat.FormatTemplate, core.FormatTemplate)
    assert issubclass(openai_compat.JinjaChatTemplate, core.JinjaChatTemplate)


def test_protocols_accept_the_testing_doubles() -> None:
    assert isinstance(rebase_agent.testing.ScriptedProvider(), rebase_agent.Provider)
    assert isinstance(rebase_agent.testing.ScriptedScorer(), rebase_agent.Scorer)
    assert not isinstance(object(), rebase_agent.Provider)


def test_core_never_imports_a_provider() -> None:
    import pathlib

    core = pathlib.Path(rebase_agent.__file__).parent
    for path in core.rglob("*.py"):
        text = path.read_text()
        assert "import providers" not in text and "from providers" not in text, path
        assert "llama_cpp" not in text and "import openai" not in text, path
