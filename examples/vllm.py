"""REBASE against OpenAI-compatible endpoints: a vLLM policy and a Qwen2.5-Math-PRM on vLLM.

Start the two servers (one GPU each, or split one with ``--gpu-memory-utilization``)::

    vllm serve Qwen/Qwen2.5-Math-1.5B-Instruct --port 8000 --gpu-memory-utilization 0.45
    vllm serve Qwen/Qwen2.5-Math-PRM-7B --runner pooling --port 8001 \\
        --gpu-memory-utilization 0.45

then run ``python examples/vllm.py``. Other servers:

- SGLang policy: ``server="sglang"``; llama-server: ``server="llama_server"`` (start it with
  ``-np`` at least the largest number of children, so ``n`` is served in one request); Ollama:
  ``mode="ollama_raw"`` with ``base_url="http://localhost:11434"``.
- OpenAI and other hosted APIs cannot continue a partial answer: use
  ``mode="chat_next_step", server="openai"`` (an approximation of step continuation) and a
  :class:`~providers.openai_compat.JudgeScorer` as the PRM.
- Without vLLM's ``/pooling`` (llama-server, SGLang, Ollama), score with a generative PRM:
  :class:`~providers.openai_compat.MathShepherdScorer`,
  :class:`~providers.openai_compat.RLHFlowScorer` or ``JudgeScorer``.
"""

from __future__ import annotations

import os

import anyio

from providers.openai_compat import JinjaChatTemplate, OpenAIProvider, QwenPRMScorer
from rebase_agent import RebaseConfig, solve

POLICY_URL = os.environ.get("POLICY_URL", "http://localhost:8000/v1")
PRM_URL = os.environ.get("PRM_URL", "http://localhost:8001/v1")

# Qwen2.5's chat template, reduced to what a single-turn prompt needs (ChatML).
QWEN_CHAT = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


async def main() -> None:
    """Solve one problem with budget 16 and print the answer, the votes and the cost."""
    template = JinjaChatTemplate(
        QWEN_CHAT,
        system_prompt="Please reason step by step, and put your final answer within \\boxed{}.",
    )
    async with (
        OpenAIProvider(
            "Qwen/Qwen2.5-Math-1.5B-Instruct",
            POLICY_URL,  # or a list of replicas: ["http://gpu0:8000/v1", "http://gpu1:8000/v1"]
            mode="completions",
            server="vllm",
            template=template,
        ) as provider,
        QwenPRMScorer("Qwen/Qwen2.5-Math-PRM-7B", PRM_URL) as scorer,
    ):
        result = await solve(
            "Find the remainder when 7^2024 is divided by 10.",
            provider=provider,
            scorer=scorer,
            config=RebaseConfig(budget=16, step_delimiters=("\n\n",), max_step_tokens=256),
        )
    print("answer:", result.answer)
    for vote in result.votes[:3]:
        print("  vote:", vote)
    usage = result.usage
    print(
        f"policy tokens: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion; "
        f"PRM tokens: {usage.scorer_prompt_tokens}; requests: {usage.provider_requests}"
    )


if __name__ == "__main__":
    anyio.run(main)
