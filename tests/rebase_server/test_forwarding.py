"""A route with ``forward_tools`` sends tool-calling turns to its policy endpoint unchanged
(but for the model name), so one base URL serves a whole agent loop."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from rebase_agent.testing import ScriptedProvider, ScriptedScorer
from rebase_server import ForwardTools
from tests.rebase_server.helpers import TOKEN, ToolEndpoint, config, serving, serving_app

pytestmark = pytest.mark.anyio

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


async def test_a_tool_loop_is_forwarded_and_plain_turns_are_searched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLICY_KEY", "upstream-key")
    endpoint = ToolEndpoint()
    provider = ScriptedProvider(answers=["42"])
    async with serving_app(endpoint.app) as upstream:
        forward = ForwardTools(
            base_url=f"{upstream}/v1", model="policy-7b", api_key_env="POLICY_KEY"
        )
        server_config = config(route={"forward_tools": forward})
        backends = {"rebase-test": (provider, ScriptedScorer())}
        async with serving(server_config, backends) as base:
            async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=TOKEN, max_retries=0) as c:
                messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
                call = await c.chat.completions.create(
                    model="rebase-test",
                    messages=messages,
                    tools=TOOLS,
                    extra_body={"rebase": {"budget": 2}},
                )
                tool_call = call.choices[0].message.tool_calls[0]  # type: ignore[index]
                messages += [
                    call.choices[0].message.model_dump(exclude_none=True),
                    {"role": "tool", "tool_call_id": tool_call.id, "content": "sunny, 21 C"},
                ]
                stream = await c.chat.completions.create(
                    model="rebase-test", messages=messages, tools=TOOLS, stream=True
                )
                streamed = "".join(
                    [ch.choices[0].delta.content or "" async for ch in stream if ch.choices]
                )
                plain = await c.chat.completions.create(
                    model="rebase-test", messages=[{"role": "user", "content": "6 * 7?"}]
                )
    assert call.choices[0].finish_reason == "tool_calls"
    assert tool_call.function.name == "get_weather"  # type: ignore[union-attr]
    assert streamed == "It is sunny."
    assert plain.choices[0].message.content.endswith("The answer is 42.")  # type: ignore[union-attr]
    # Forwarded unchanged but for the model; the rebase field stays here; the key is the
    # endpoint's own.
    first = endpoint.bodies[0]
    assert first["model"] == "policy-7b" and "rebase" not in first
    assert first["tools"] == TOOLS and first["messages"] == [messages[0]]
    assert endpoint.headers[0]["authorization"] == "Bearer upstream-key"
    assert len(endpoint.bodies) == 2  # the plain turn was a search
    assert provider.requests and provider.requests[0].problem == "6 * 7?"
