"""Agent frameworks' own clients against a real localhost server on the scripted double: one
chat turn, one streamed turn, one turn with a tool (refused with a 400 the framework surfaces),
and structured output refused clearly. Each framework's tests skip only if it is absent (the
``dev`` extra installs them all)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest
from pydantic import BaseModel

from rebase_agent.testing import ScriptedProvider, ScriptedScorer
from tests.rebase_server.helpers import TOKEN, config, serving

pytestmark = pytest.mark.anyio


class Answer(BaseModel):
    value: int


@pytest.fixture
async def base() -> AsyncIterator[str]:
    backends = {"rebase-test": (ScriptedProvider(answers=["42"]), ScriptedScorer())}
    async with serving(config(), backends) as url:
        yield url


# --- openai ------------------------------------------------------------------------------------


async def test_openai_client(base: str) -> None:
    async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=TOKEN, max_retries=0) as c:
        reply = await c.chat.completions.create(
            model="rebase-test", messages=[{"role": "user", "content": "What is 6 * 7?"}]
        )
        stream = await c.chat.completions.create(
            model="rebase-test",
            messages=[{"role": "user", "content": "What is 6 * 7?"}],
            stream=True,
        )
        streamed = "".join([ch.choices[0].delta.content or "" async for ch in stream])
        with pytest.raises(openai.BadRequestError) as tool:
            await c.chat.completions.create(
                model="rebase-test",
                messages=[{"role": "user", "content": "Weather?"}],
                tools=[{"type": "function", "function": {"name": "weather", "parameters": {}}}],
            )
        with pytest.raises(openai.BadRequestError) as structured:
            await c.chat.completions.parse(
                model="rebase-test",
                messages=[{"role": "user", "content": "What is 6 * 7?"}],
                response_format=Answer,
            )
    assert reply.choices[0].message.content.endswith("The answer is 42.")  # type: ignore[union-attr]
    assert streamed.endswith("The answer is 42.")
    assert tool.value.body["param"] == "tools"  # type: ignore[index]
    assert structured.value.body["param"] == "response_format"  # type: ignore[index]
    assert "json_schema" in structured.value.message


# --- pydantic-ai -------------------------------------------------------------------------------


async def test_pydantic_ai_chat_stream_tool_and_structured_output(base: str) -> None:
    pytest.importorskip("pydantic_ai")
    from pydantic_ai import Agent, NativeOutput
    from pydantic_ai.exceptions import ModelHTTPError
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=TOKEN, max_retries=0) as client:
        model = OpenAIChatModel("rebase-test", provider=OpenAIProvider(openai_client=client))
        await run_pydantic_ai(lambda **kwargs: Agent(model, **kwargs), NativeOutput, ModelHTTPError)


async def run_pydantic_ai(pydantic_agent: Any, native_output: Any, http_error: Any) -> None:
    from pydantic_ai import Agent

    ModelHTTPError = http_error
    agent = pydantic_agent()
    assert isinstance(agent, Agent)
    result = await agent.run("What is 6 * 7?")
    assert result.output.endswith("The answer is 42.")
    async with agent.run_stream("What is 6 * 7?") as stream:
        streamed = await stream.get_output()
    assert streamed.endswith("The answer is 42.")

    with_tool = pydantic_agent()
    assert isinstance(with_tool, Agent)

    @with_tool.tool_plain
    def weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    with pytest.raises(ModelHTTPError) as tool:
        await with_tool.run("Weather in Paris?")
    assert tool.value.status_code == 400 and "tools" in str(tool.value.body)

    structured = pydantic_agent(output_type=native_output(Answer))
    assert isinstance(structured, Agent)
    with pytest.raises(ModelHTTPError) as native:
        await structured.run("What is 6 * 7?")
    assert native.value.status_code == 400 and "response_format" in str(native.value.body)
    # pydantic-ai's default structured output is a tool call: refused as a tool.
    tool_output = pydantic_agent(output_type=Answer)
    assert isinstance(tool_output, Agent)
    with pytest.raises(ModelHTTPError) as as_tool:
        await tool_output.run("What is 6 * 7?")
    assert as_tool.value.status_code == 400 and "tools" in str(as_tool.value.body)


# --- langchain-openai --------------------------------------------------------------------------


async def test_langchain_openai_chat_stream_tool_and_structured_output(base: str) -> None:
    pytest.importorskip("langchain_openai")
    from langchain_openai import ChatOpenAI

    async with httpx2.AsyncClient(timeout=30) as http:
        llm = ChatOpenAI(
            model="rebase-test",
            base_url=f"{base}/v1",
            api_key=TOKEN,
            max_retries=0,
            http_async_client=http,
        )
        await run_langchain(llm)


async def run_langchain(llm: Any) -> None:
    from langchain_core.tools import tool

    reply = await llm.ainvoke("What is 6 * 7?")
    assert isinstance(reply.content, str) and reply.content.endswith("The answer is 42.")
    streamed = "".join([str(chunk.content) async for chunk in llm.astream("What is 6 * 7?")])
    assert streamed.endswith("The answer is 42.")

    @tool
    def weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    with pytest.raises(openai.BadRequestError) as with_tool:
        await llm.bind_tools([weather]).ainvoke("Weather in Paris?")
    assert with_tool.value.body["param"] == "tools"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as structured:
        await llm.with_structured_output(Answer, method="json_schema").ainvoke("6 * 7?")
    assert structured.value.body["param"] == "response_format"  # type: ignore[index]
