"""Memory estimates and the fits-on-the-GPU check of the llama.cpp provider."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from providers.llamacpp import MemoryEstimate, check_memory, estimate_memory
from rebase_agent import ProviderError

pytestmark = pytest.mark.llama


def test_estimate_reads_the_gguf(tiny_gguf: Path) -> None:
    small = estimate_memory(tiny_gguf, n_ctx=1024, n_gpu_layers=0)
    big = estimate_memory(tiny_gguf, n_ctx=4096, n_gpu_layers=0)
    assert small.weights == tiny_gguf.stat().st_size
    # 2 layers x 2 KV heads x (16 + 16) dims x 2 bytes per cell
    assert small.kv_cache == 1024 * 2 * 2 * 32 * 2
    assert big.kv_cache == 4 * small.kv_cache
    assert not small.on_gpu


def test_gpu_overflow_fails_with_what_needs_what() -> None:
    mib = 1024 * 1024
    policy = MemoryEstimate(
        name="policy", weights=900 * mib, kv_cache=300 * mib, buffers=100 * mib, on_gpu=True
    )
    prm = MemoryEstimate(
        name="prm", weights=4000 * mib, kv_cache=500 * mib, buffers=100 * mib, on_gpu=True
    )
    with pytest.raises(ProviderError) as info:
        check_memory([policy, prm], available=2000 * mib)
    message = str(info.value)
    assert "5900 MiB" in message and "2000 MiB is free" in message
    assert "policy: 1300 MiB" in message and "these fit: policy" in message
    check_memory([policy], available=2000 * mib)  # fits: no error


def test_cpu_only_just_logs(caplog: pytest.LogCaptureFixture) -> None:
    cpu = MemoryEstimate(name="cpu model", weights=1, kv_cache=1, buffers=1, on_gpu=False)
    with caplog.at_level(logging.INFO, logger="providers.llamacpp"):
        check_memory([cpu], available=0)
    assert "on CPU" in caplog.text
