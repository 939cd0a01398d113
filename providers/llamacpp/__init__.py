"""Local llama.cpp policy and process reward model for rebase-agent.

Install with ``pip install 'rebase-agent[llama]'``; pip compiles llama-cpp-python from source
(4 to 13 minutes on 2 cores). For a GPU build, set ``CMAKE_ARGS`` first:

* CUDA: ``CMAKE_ARGS="-DGGML_CUDA=on" pip install 'rebase-agent[llama]'``
* Metal (Apple silicon; on by default there): ``CMAKE_ARGS="-DGGML_METAL=on"``
* Vulkan (AMD/Intel/NVIDIA laptop GPUs): ``CMAKE_ARGS="-DGGML_VULKAN=on"``

and add ``--upgrade --force-reinstall --no-cache-dir`` to rebuild an installed copy.
``n_gpu_layers=-1`` offloads every layer; on a laptop GPU too small for the policy and the PRM
together, lower ``n_gpu_layers`` (the rest runs on the CPU) or ``n_ctx`` until
:func:`check_memory` passes; it runs before :func:`local_models` loads anything.

Entry points: :class:`LlamaCppProvider` (the policy), :class:`LlamaCppScorer` (a PRM read from
label-token logits), :func:`local_models` (both, memory-checked) and :func:`default_models`
(both on the bundled Gemma 3 270M, sharing one loaded model). Prompt templates are the core's
(:mod:`rebase_agent.templates`), the same the HTTP provider takes; ``CompletionTemplate`` and
``ChatTemplate`` still import from here, under their earlier names.
"""

from providers.llamacpp._lib import llama_cpp as _llama_cpp  # noqa: F401  (import guard)
from providers.llamacpp.defaults import default_model_path as default_model_path
from providers.llamacpp.defaults import default_models as default_models
from providers.llamacpp.defaults import local_models as local_models
from providers.llamacpp.memory import MemoryEstimate as MemoryEstimate
from providers.llamacpp.memory import check_memory as check_memory
from providers.llamacpp.memory import estimate_memory as estimate_memory
from providers.llamacpp.model import LlamaModel as LlamaModel
from providers.llamacpp.provider import LlamaCppProvider as LlamaCppProvider
from providers.llamacpp.scorer import LlamaCppScorer as LlamaCppScorer
from providers.llamacpp.templates import DEFAULT_COMPLETION_TEMPLATE as DEFAULT_COMPLETION_TEMPLATE
from providers.llamacpp.templates import DEFAULT_JUDGE_TEMPLATE as DEFAULT_JUDGE_TEMPLATE
from providers.llamacpp.templates import FEW_SHOT_STEPS_TEMPLATE as FEW_SHOT_STEPS_TEMPLATE
from providers.llamacpp.templates import ChatTemplate as ChatTemplate
from providers.llamacpp.templates import CompletionTemplate as CompletionTemplate
from rebase_agent.templates import FormatTemplate as FormatTemplate
from rebase_agent.templates import JinjaChatTemplate as JinjaChatTemplate
from rebase_agent.templates import PromptTemplate as PromptTemplate

__all__ = (
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
