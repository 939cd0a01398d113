"""Every request field is implemented or refused with a 400 naming it: driven by the openai
client against a real localhost server on the scripted double."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import pytest

from rebase_agent import ProviderError, StepRequest
from rebase_agent.testing import FunctionProvider, ScriptedProvider, ScriptedScorer
from tests.rebase_server.helpers import TOKEN, config, serving

pytestmark = pytest.mark.anyio

USER: list[Any] = [{"role": "user", "content": "What is 6 * 7?"}]


def client(base: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=TOKEN, max_retries=0, timeout=30)


def scripted() -> tuple[ScriptedProvider, ScriptedScorer]:
    scorer = ScriptedScorer(rules={"42": 0.9, "41": 0.5}, default_range=(0.0, 0.01))
    return ScriptedProvider(depth=2, answers=["42", "41", "24"]), scorer


async def test_n_returns_the_best_answer_classes_as_choices() -> None:
    provider, scorer = scripted()
    async with serving(config(), {"rebase-test": (provider, scorer)}) as base:
        async with client(base) as c:
            reply = await c.chat.completions.create(
                model="rebase-test", messages=USER, n=3, extra_body={"rebase": {"budget": 8}}
            )
            text = await c.completions.create(model="rebase-test", prompt="6 * 7?", n=2)
    summary = reply.model_extra["rebase"]  # type: ignore[index]
    answers = [v["answer"] for v in summary["votes"]]
    assert len(reply.choices) == min(3, len(answers)) >= 2
    assert [c.index for c in reply.choices] == list(range(len(reply.choices)))
    for choice, answer in zip(reply.choices, answers, strict=False):
        assert choice.message.content is not None
        assert choice.message.content.endswith(f"The answer is {answer}.")
    assert summary["answer"] == answers[0]  # the first choice is the search's answer
    assert len(text.choices) == 2 and text.choices[0].text != text.choices[1].text


async def test_max_tokens_caps_every_solution() -> None:
    provider, scorer = scripted()
    async with serving(config(), {"rebase-test": (provider, scorer)}) as base:
        async with client(base) as c:
            await c.chat.completions.create(model="rebase-test", messages=USER, max_tokens=6)
            await c.chat.completions.create(
                model="rebase-test", messages=USER, max_completion_tokens=9
            )
    # Each step's limit is what the path has left of the cap.
    assert provider.requests and all(r.max_tokens <= 9 for r in provider.requests)
    assert any(r.max_tokens <= 6 for r in provider.requests)


async def test_stop_cuts_each_solution_before_the_stop_string() -> None:
    provider, scorer = scripted()
    async with serving(config(), {"rebase-test": (provider, scorer)}) as base:
        async with client(base) as c:
            reply = await c.chat.completions.create(
                model="rebase-test", messages=USER, stop=["Step 2"]
            )
            stream = await c.chat.completions.create(
                model="rebase-test", messages=USER, stop="answer", stream=True
            )
            streamed = "".join([ch.choices[0].delta.content or "" async for ch in stream])
    content = reply.choices[0].message.content
    assert content is not None and content.startswith("Step 1:") and "Step 2" not in content
    assert reply.choices[0].finish_reason == "stop"
    assert streamed.endswith("The ")


async def test_a_multi_turn_conversation_solves_the_last_user_turn_in_context() -> None:
    provider, scorer = scripted()
    messages: list[Any] = [
        {"role": "system", "content": "Answer with a number."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": [{"type": "text", "text": "And times 3?"}]},
    ]
    async with serving(config(), {"rebase-test": (provider, scorer)}) as base:
        async with client(base) as c:
            await c.chat.completions.create(model="rebase-test", messages=messages)
    assert provider.requests[0].problem == (
        "system: Answer with a number.\n\nuser: What is 2 + 2?\n\nassistant: 4\n\n"
        "user: And times 3?"
    )


async def test_sampling_fields_reach_the_policy() -> None:
    provider, scorer = scripted()
    async with serving(config(), {"rebase-test": (provider, scorer)}) as base:
        async with client(base) as c:
            await c.chat.completions.create(
                model="rebase-test", messages=USER, temperature=0.3, top_p=0.5, seed=7
            )
    assert {(r.temperature, r.top_p) for r in provider.requests} == {(0.3, 0.5)}
    assert all(r.seed is not None for r in provider.requests)


async def test_responses_api_text_in_text_out() -> None:
    provider, scorer = scripted()
    async with serving(config(), {"rebase-test": (provider, scorer)}) as base:
        async with client(base) as c:
            reply = await c.responses.create(
                model="rebase-test", input="What is 6 * 7?", instructions="Be brief."
            )
            listed = await c.responses.create(
                model="rebase-test",
                input=[{"role": "user", "content": [{"type": "input_text", "text": "6 * 7?"}]}],
                max_output_tokens=50,
            )
            with pytest.raises(openai.BadRequestError) as tools:
                await c.responses.create(
                    model="rebase-test",
                    input="hi",
                    tools=[{"type": "function", "name": "f", "parameters": {}}],  # type: ignore[list-item]
                )
            with pytest.raises(openai.BadRequestError) as structured:
                await c.responses.create(
                    model="rebase-test",
                    input="hi",
                    text={"format": {"type": "json_object"}},
                )
    assert reply.output_text.endswith("The answer is 42.")
    assert reply.status == "completed" and reply.usage is not None
    assert reply.usage.total_tokens > 0
    assert provider.requests[0].problem == "system: Be brief.\n\nuser: What is 6 * 7?"
    assert listed.output_text
    assert tools.value.body["param"] == "tools"  # type: ignore[index]
    assert structured.value.body["param"] == "text"  # type: ignore[index]


async def test_responses_api_streams_text_and_errors() -> None:
    provider, scorer = scripted()

    def broken(request: StepRequest) -> list[str]:
        raise ProviderError("lost the GPU")

    backends: Any = {"rebase-test": (provider, scorer)}
    async with serving(config(), backends) as base:
        async with client(base) as c:
            stream = await c.responses.create(model="rebase-test", input="6 * 7?", stream=True)
            events = [event async for event in stream]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas.startswith("Step 1:") and "The answer is" in deltas
    assert events[-1].response.output_text == deltas
    async with serving(config(), {"rebase-test": (FunctionProvider(broken), scorer)}) as base:
        async with client(base) as c:
            failing = await c.responses.create(model="rebase-test", input="hi", stream=True)
            with pytest.raises(openai.APIError, match="lost the GPU"):
                async for _ in failing:
                    pass


async def test_models_by_id_and_openai_shaped_404_and_405() -> None:
    async with serving(config()) as base:
        async with client(base) as c:
            model = await c.models.retrieve("rebase-test")
            with pytest.raises(openai.NotFoundError) as missing:
                await c.models.retrieve("gpt-17")
        async with httpx2.AsyncClient(base_url=base) as raw:
            no_route = await raw.get("/v1/nothing-here")
            wrong_method = await raw.get("/v1/chat/completions")
    assert model.id == "rebase-test" and model.owned_by == "rebase-agent"
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert no_route.status_code == 404
    assert no_route.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert set(wrong_method.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format",
        ),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"store": True}, "store"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"frobnicate": 1}, "frobnicate"),
    ],
)
async def test_what_the_search_cannot_do_is_refused_naming_the_field(
    extra: dict[str, Any], param: str
) -> None:
    provider, scorer = scripted()
    async with serving(config(), {"rebase-test": (provider, scorer)}) as base:
        async with client(base) as c:
            with pytest.raises(openai.BadRequestError) as info:
                await c.chat.completions.create(
                    model="rebase-test", messages=USER, extra_body=extra
                )
    assert info.value.status_code == 400
    assert info.value.body["param"] == param  # type: ignore[index]
    assert param in info.value.body["message"]  # type: ignore[index]
    assert provider.requests == []  # refused before any search


async def test_neutral_values_and_metadata_are_accepted() -> None:
    async with serving(config()) as base:
        async with client(base) as c:
            reply = await c.chat.completions.create(
                model="rebase-test",
                messages=USER,
                tools=[],
                response_format={"type": "text"},
                logprobs=False,
                user="u-1",
                metadata={"k": "v"},
                store=False,
                presence_penalty=0,
            )
    assert reply.choices[0].message.content
