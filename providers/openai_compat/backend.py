"""``--backend openai``: an OpenAI-compatible policy and scorer from string options.

Options (``--option KEY=VALUE`` on the command line, ``options`` in a server route):

- ``model`` (required), ``base_url`` (default ``http://localhost:8000/v1``; several replicas
  separated by commas), ``mode`` (``completions``, ``chat_prefill``, ``chat_next_step``,
  ``ollama_raw``), ``server`` (``generic``, ``vllm``, ``sglang``, ``llama_server``, ``ollama``,
  ``openai``);
- ``scorer``: ``judge`` (default: an LLM judge on ``scorer_model``), ``qwen_prm`` or
  ``math_shepherd_pooling`` (vLLM ``/pooling``), ``math_shepherd`` or ``rlhflow`` (logprobs);
  ``scorer_model`` (default: ``model``), ``scorer_base_url`` (default: ``base_url``);
- ``api_key_env``: the environment variable that holds the API key (default
  ``OPENAI_API_KEY``). Keys are never taken as option values, which end up in shell history
  and process lists.
"""

from __future__ import annotations

import os
from typing import Any, cast, get_args

from providers.openai_compat.judge import JudgeScorer
from providers.openai_compat.logprob_scorers import MathShepherdScorer, RLHFlowScorer
from providers.openai_compat.pooling import MathShepherdPoolingScorer, QwenPRMScorer
from providers.openai_compat.provider import Backend, Mode, OpenAIProvider
from rebase_agent.protocols import Scorer

__all__ = ("openai_backend",)

_SCORERS: dict[str, type[Any]] = {
    "judge": JudgeScorer,
    "qwen_prm": QwenPRMScorer,
    "math_shepherd_pooling": MathShepherdPoolingScorer,
    "math_shepherd": MathShepherdScorer,
    "rlhflow": RLHFlowScorer,
}
_KNOWN = {
    "model",
    "base_url",
    "mode",
    "server",
    "scorer",
    "scorer_model",
    "scorer_base_url",
    "api_key_env",
}


def openai_backend(**options: str) -> tuple[OpenAIProvider, Scorer]:
    """Build the provider and scorer that ``options`` describe (see the module docs).

    Raises:
        ValueError: A missing ``model``, an unknown option or an unknown value, named.
    """
    unknown = sorted(set(options) - _KNOWN)
    if unknown:
        raise ValueError(f"unknown openai backend options {unknown}; known: {sorted(_KNOWN)}")
    if "model" not in options:
        raise ValueError("the openai backend needs --option model=NAME")
    mode = options.get("mode", "completions")
    server = options.get("server", "generic")
    if mode not in get_args(Mode):
        raise ValueError(f"mode must be one of {get_args(Mode)}, got {mode!r}")
    if server not in get_args(Backend):
        raise ValueError(f"server must be one of {get_args(Backend)}, got {server!r}")
    scorer_kind = options.get("scorer", "judge")
    if scorer_kind not in _SCORERS:
        raise ValueError(f"scorer must be one of {sorted(_SCORERS)}, got {scorer_kind!r}")
    key_env = options.get("api_key_env", "OPENAI_API_KEY")
    api_key = os.environ.get(key_env)
    urls = options.get("base_url", "http://localhost:8000/v1").split(",")
    provider = OpenAIProvider(
        options["model"],
        urls,
        mode=cast(Mode, mode),
        backend=cast(Backend, server),
        api_key=api_key,
    )
    scorer_urls = options.get("scorer_base_url", ",".join(urls)).split(",")
    scorer = _SCORERS[scorer_kind](
        options.get("scorer_model", options["model"]), scorer_urls, api_key=api_key
    )
    return provider, scorer
