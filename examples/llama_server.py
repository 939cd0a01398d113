"""REBASE against llama.cpp's ``llama-server``: the policy and an LLM-as-judge PRM over HTTP.

llama-server has no token-classification pooling, so the PRM is a judge read from logprobs
(P(Yes)/(P(Yes)+P(No)) on ``/v1/completions``). Start one server per model, with at least as
many slots (``-np``) as the most children a node gets, so ``n`` is served in one request::

    llama-server -m qwen2.5-math-1.5b-instruct-q4_k_m.gguf --port 8080 -np 16 -c 32768
    llama-server -m qwen2.5-7b-instruct-q4_k_m.gguf --port 8081 -np 8 -c 16384

then run ``python examples/llama_server.py``. The policy prompt is the server's own chat
template (``POST /apply-template``) followed by the partial solution, on ``/v1/completions``.
llama-server's usage counts one choice when ``n > 1``, so completion tokens are undercounted
there.
"""

from __future__ import annotations

import os

import anyio

from providers.openai_compat import JudgeScorer, OpenAIProvider, ServerChatTemplate
from rebase_agent import RebaseConfig, solve

POLICY_URL = os.environ.get("POLICY_URL", "http://localhost:8080/v1")
JUDGE_URL = os.environ.get("JUDGE_URL", "http://localhost:8081/v1")


async def main() -> None:
    """Solve one problem with budget 16 and print the answer and the cost."""
    template = ServerChatTemplate(
        system_prompt="Please reason step by step, and put your final answer within \\boxed{}."
    )
    async with (
        OpenAIProvider(
            "policy", POLICY_URL, mode="completions", server="llama_server", template=template
        ) as provider,
        JudgeScorer("judge", JUDGE_URL, api="completions", batch_size=8) as scorer,
    ):
        result = await solve(
            "What is the sum of the first 20 positive odd numbers?",
            provider=provider,
            scorer=scorer,
            config=RebaseConfig(budget=16, max_step_tokens=256),
        )
    usage = result.usage
    print("answer:", result.answer)
    print(
        f"policy tokens: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion; "
        f"judge tokens: {usage.scorer_prompt_tokens}"
    )


if __name__ == "__main__":
    anyio.run(main)
