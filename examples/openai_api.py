"""REBASE on a hosted API (OpenAI): next-step chat sampling and an LLM-as-judge PRM.

Hosted chat APIs cannot continue a partial assistant message, so the policy runs in
``chat_next_step`` mode: the steps so far are a finished assistant turn and a user turn asks for
the next step only. This is an approximation of step continuation (the model writes a new reply,
not the continuation of its own text), but it works on any chat API. The PRM is a judge that
reads P(Yes)/(P(Yes)+P(No)) from ``top_logprobs`` (reasoning models reject logprobs: use a
non-reasoning model such as gpt-4o-mini as the judge).

Run with ``OPENAI_API_KEY`` set: ``python examples/openai_api.py``. It sends about 16 × depth
policy requests and as many judge requests; OpenAI allows at most 4 stop strings.
"""

from __future__ import annotations

import os

import anyio

from providers.openai_compat import JudgeScorer, OpenAIProvider, RetryPolicy
from rebase_agent import RebaseConfig, solve

BASE_URL = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
POLICY_MODEL = os.environ.get("POLICY_MODEL", "gpt-4o-mini")
JUDGE_MODEL = os.environ.get("JUDGE_MODEL", "gpt-4o-mini")


async def main() -> None:
    """Solve one problem with budget 16 and print the answer and the cost."""
    retry = RetryPolicy(max_attempts=8, max_backoff_s=60.0)  # rate limits: honour Retry-After
    async with (
        OpenAIProvider(
            POLICY_MODEL,
            BASE_URL,
            mode="chat_next_step",
            server="openai",
            system_prompt=(
                "Solve the problem step by step, one step per paragraph. When asked to continue, "
                "write only the next step. Put the final answer within \\boxed{}."
            ),
            max_concurrency=8,
            retry=retry,
        ) as provider,
        JudgeScorer(JUDGE_MODEL, BASE_URL, max_concurrency=8, retry=retry) as scorer,
    ):
        result = await solve(
            "How many positive divisors does 360 have?",
            provider=provider,
            scorer=scorer,
            config=RebaseConfig(budget=16, max_depth=12, max_step_tokens=256),
        )
    usage = result.usage
    print("answer:", result.answer)
    print(
        f"policy tokens: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion; "
        f"judge tokens: {usage.scorer_prompt_tokens} prompt + "
        f"{usage.scorer_completion_tokens} completion"
    )


if __name__ == "__main__":
    anyio.run(main)
