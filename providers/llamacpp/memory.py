"""Memory estimates at load time, so that a policy and a PRM that cannot share one GPU fail
with a clear message before loading instead of running out of memory midway.

:func:`estimate_memory` reads a GGUF's hyper-parameters (a vocabulary-only load: no weights) and
estimates weights + KV cache + logits buffer. :func:`check_memory` adds up several estimates and,
when any of them offloads to a GPU, compares the total with the free memory llama.cpp reports for
its GPU devices; on CPU it only logs the total.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

from pydantic import BaseModel

from providers.llamacpp._lib import ensure_backend, llama_cpp, set_native_logging
from rebase_agent.exceptions import ProviderError

__all__ = ("MemoryEstimate", "check_memory", "estimate_memory", "gpu_free_memory")

logger = logging.getLogger("providers.llamacpp")

_MIB = 1024 * 1024


class MemoryEstimate(BaseModel):
    """What one model and its context need, in bytes."""

    name: str
    weights: int
    kv_cache: int
    buffers: int
    on_gpu: bool

    @property
    def total(self) -> int:
        """Weights + KV cache + buffers."""
        return self.weights + self.kv_cache + self.buffers

    def describe(self) -> str:
        """One line: the name and each part in MiB."""
        return (
            f"{self.name}: {self.total / _MIB:.0f} MiB (weights {self.weights / _MIB:.0f}, "
            f"KV cache {self.kv_cache / _MIB:.0f}, buffers {self.buffers / _MIB:.0f})"
        )


def _meta_int(model: object, key: str) -> int | None:
    buf = ctypes.create_string_buffer(64)
    if llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, 64) < 0:
        return None
    try:
        return int(buf.value)
    except ValueError:
        return None


def estimate_memory(
    model_path: str | os.PathLike[str],
    *,
    n_ctx: int,
    n_outputs: int = 32,
    n_gpu_layers: int = -1,
    name: str | None = None,
    kv_bytes_per_value: int = 2,
) -> MemoryEstimate:
    """Estimate one model's memory with a context of ``n_ctx`` cells (f16 KV by default).

    The weights are the file size (quantized weights load as stored); the KV cache is
    ``n_ctx x layers x kv_heads x (key + value head dims)``; buffers are the logits of
    ``n_outputs`` rows (about ``n_seq_max``) plus a 64 MiB compute margin. For a second context
    on an already counted model, set ``weights=0`` on its estimate.
    """
    path = Path(model_path)
    set_native_logging(False)
    ensure_backend()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(path).encode("utf-8"), params)
    if not model:
        raise ProviderError(f"llama.cpp could not read the GGUF at {path}")
    try:
        # A vocabulary-only load has no hyper-parameters: read them from the metadata.
        arch = _meta_str_arch(model)
        n_layer = _meta_int(model, f"{arch}.block_count") or 0
        n_head = _meta_int(model, f"{arch}.attention.head_count") or 1
        n_head_kv = _meta_int(model, f"{arch}.attention.head_count_kv") or n_head
        n_embd = _meta_int(model, f"{arch}.embedding_length") or 0
        n_vocab = int(llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model)))
        k_dim = _meta_int(model, f"{arch}.attention.key_length") or n_embd // n_head
        v_dim = _meta_int(model, f"{arch}.attention.value_length") or n_embd // n_head
    finally:
        llama_cpp.llama_model_free(model)
    kv = n_ctx * n_layer * n_head_kv * (k_dim + v_dim) * kv_bytes_per_value
    buffers = n_outputs * n_vocab * 4 + 64 * _MIB
    return MemoryEstimate(
        name=name or path.name,
        weights=path.stat().st_size,
        kv_cache=kv,
        buffers=buffers,
        on_gpu=n_gpu_layers != 0 and _gpu_build(),
    )


def _meta_str_arch(model: object) -> str:
    buf = ctypes.create_string_buffer(128)
    llama_cpp.llama_model_meta_val_str(model, b"general.architecture", buf, 128)
    return buf.value.decode("utf-8", errors="replace")


def _gpu_build() -> bool:
    return bool(llama_cpp.llama_supports_gpu_offload())


def gpu_free_memory() -> int | None:
    """Free memory on llama.cpp's GPU devices in bytes, or ``None`` when unknown or CPU-only."""
    try:
        lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
        lib.ggml_backend_dev_count.restype = ctypes.c_size_t
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        lib.ggml_backend_dev_type.restype = ctypes.c_int
        lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_memory.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.POINTER(ctypes.c_size_t),
        ]
    except (OSError, AttributeError):
        return None
    free_total, found = 0, False
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        if lib.ggml_backend_dev_type(dev) == 0:  # GGML_BACKEND_DEVICE_TYPE_CPU
            continue
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        free_total += free.value
        found = True
    return free_total if found else None


def check_memory(estimates: list[MemoryEstimate], *, available: int | None = None) -> None:
    """Fail clearly when the models on the GPU will not fit together; on CPU, log the total.

    Args:
        estimates: One per model and context to load.
        available: Free GPU bytes (default: as llama.cpp's GPU devices report).

    Raises:
        ProviderError: The GPU estimates add up to more than the free GPU memory; the message
            lists what needs how much and what fits.
    """
    lines = "; ".join(e.describe() for e in estimates)
    gpu = [e for e in estimates if e.on_gpu]
    if not gpu:
        total = sum(e.total for e in estimates)
        logger.info("llama.cpp on CPU needs about %d MiB of RAM: %s", total // _MIB, lines)
        return
    free = gpu_free_memory() if available is None else available
    need = sum(e.total for e in gpu)
    if free is None:
        logger.info(
            "llama.cpp GPU memory unknown; the models need about %d MiB: %s", need // _MIB, lines
        )
        return
    if need > free:
        fits = [e.name for e in gpu if e.total <= free]
        raise ProviderError(
            f"the models need about {need // _MIB} MiB of GPU memory but {free // _MIB} MiB is "
            f"free: {lines}. Alone, these fit: {', '.join(fits) or 'none'}. Lower n_ctx, or "
            "n_gpu_layers of one model (layers left on the CPU need no GPU memory)."
        )
    logger.info(
        "llama.cpp GPU memory: %d of %d MiB free needed: %s", need // _MIB, free // _MIB, lines
    )
