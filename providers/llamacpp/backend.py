"""``--backend llama``: the local llama.cpp policy and scorer from string options.

Options (``--option KEY=VALUE`` on the command line); with none, the embedded default
(:func:`~providers.llamacpp.default_models`, Gemma 3 270M, whose provider recommends
:data:`~providers.llamacpp.defaults.EMBEDDED_SEARCH_DEFAULTS` to the commands):

- ``model``: GGUF path of the policy (default: the bundled Gemma 3 270M);
- ``scorer``: ``judge`` (default, LLM-as-judge P(Yes)) or ``math_shepherd`` (P(+) at step tags);
  ``scorer_model``: GGUF path of the PRM (default: the policy's, sharing its loaded weights);
  ``judge_prompt``: ``own`` (default: the judge template's prompt) or ``policy`` (the question
  after the policy's own prompt, which the judge on the policy's context mostly finds cached);
- ``n_ctx`` (8192), ``scorer_n_ctx`` (4096), ``n_seq_max`` (128), ``n_threads``;
  ``n_ubatch``: rows llama.cpp computes at once (default: 32 on the CPU, 512 on a GPU);
- ``n_gpu_layers`` (``-1``: all layers on the GPU of a CUDA/Metal/Vulkan build; lower it for a
  laptop GPU), ``scorer_n_gpu_layers`` (default: ``n_gpu_layers``);
- ``template``: a format string with ``{problem}`` and optionally a trailing ``{solution}``
  (literal braces written ``{{``/``}}``), or a Jinja chat template, told apart by
  :func:`rebase_agent.templates.is_jinja_template` (default: four worked examples for the
  bundled model, the plain ``Question/Answer`` template for any other); ``chat`` /
  ``scorer_chat`` (``true``/``false``): use the GGUF's chat template;
- ``top_k``: sample among the top-k tokens only (0: the whole vocabulary; the default, except
  40 for the embedded default);
- ``repack`` (``auto``, ``on``, ``off``): how llama.cpp stores the CPU weights (default
  ``auto``: repacked, unless the llama.cpp build uses AMX, whose matrix product crashes on Q4_K
  weights; see :mod:`providers.llamacpp.repack`);
- ``calculator`` (``true``/``false``): the model writes the arithmetic of a step, a calculator
  writes its value after each ``=`` (:class:`rebase_agent.calculator.CalculatorProvider`;
  default: on for the embedded default, off for any other model or template);
- ``verbose`` (``true``/``false``): llama.cpp's own log.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from providers.llamacpp.defaults import (
    EMBEDDED_SEARCH_DEFAULTS,
    EMBEDDED_TOP_K,
    default_model_path,
    local_models,
)
from providers.llamacpp.provider import LlamaCppProvider
from providers.llamacpp.repack import parse_repack
from providers.llamacpp.scorer import LlamaCppScorer
from providers.llamacpp.templates import FEW_SHOT_STEPS_TEMPLATE
from rebase_agent.backends import parse_flag
from rebase_agent.calculator import CalculatorProvider

__all__ = ("llama_backend",)

_SIZES = {
    "n_ctx",
    "scorer_n_ctx",
    "n_seq_max",
    "n_threads",
    "n_ubatch",
    "n_gpu_layers",
    "scorer_n_gpu_layers",
}
"""Integer options passed on to :func:`~providers.llamacpp.local_models` only when given, so
its defaults are the backend's."""
_INTS = {*_SIZES, "top_k"}
_BOOLS = {"chat", "scorer_chat", "verbose", "calculator"}
_KNOWN = {"model", "scorer", "scorer_model", "judge_prompt", "template", "repack", *_INTS, *_BOOLS}


def llama_backend(
    **options: str,
) -> tuple[LlamaCppProvider | CalculatorProvider, LlamaCppScorer]:
    """Build the provider and scorer that ``options`` describe (see the module docs).

    Raises:
        ValueError: An unknown option or a bad value, named.
        ImportError: The ``llama`` extra is not installed.
        ProviderError: The models will not fit the GPU's free memory.
    """
    unknown = sorted(set(options) - _KNOWN)
    if unknown:
        raise ValueError(f"unknown llama backend options {unknown}; known: {sorted(_KNOWN)}")

    def num(key: str) -> int | None:
        if key not in options:
            return None
        try:
            return int(options[key])
        except ValueError:
            raise ValueError(f"option {key} must be an integer, got {options[key]!r}") from None

    def flag(key: str) -> bool:
        return parse_flag(key, options[key]) if key in options else False

    mode = options.get("scorer", "judge")
    if mode not in ("judge", "math_shepherd"):
        raise ValueError(f"scorer must be judge or math_shepherd, got {mode!r}")
    repack = options.get("repack")
    if repack is not None:
        repack = parse_repack(repack, source="option repack")
    # The bundled base model gets worked examples; another model, the plain template.
    default_template = None if options.get("model") else FEW_SHOT_STEPS_TEMPLATE
    embedded = default_template is not None and "template" not in options
    embedded_top_k = EMBEDDED_TOP_K if embedded else 0
    calculator = flag("calculator") if "calculator" in options else embedded
    top_k = num("top_k")
    sizes: dict[str, Any] = {key: num(key) for key in sorted(_SIZES & set(options))}
    provider, scorer = local_models(
        options.get("model") or default_model_path(),
        scorer_path=options.get("scorer_model"),
        scorer_mode=cast(Literal["judge", "math_shepherd"], mode),
        **sizes,
        template=options.get("template") or default_template,
        chat=flag("chat"),
        scorer_chat=flag("scorer_chat"),
        judge_prompt=cast(Literal["own", "policy"], options.get("judge_prompt", "own")),
        verbose=flag("verbose"),
        top_k=embedded_top_k if top_k is None else top_k,
        repack=repack,
    )
    if embedded:
        provider.search_defaults = dict(EMBEDDED_SEARCH_DEFAULTS)
    if calculator:
        return CalculatorProvider(provider), scorer
    return provider, scorer
