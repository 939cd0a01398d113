"""Both providers take the same templates: what each one's coercion makes of a str or an object.

The HTTP provider renders through :func:`providers.openai_compat.templates.coerce_template` and
:func:`~providers.openai_compat.templates.prompt_prefix`; the llama.cpp provider through
:func:`providers.llamacpp.templates.resolve_template`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from providers.openai_compat import OpenAIProvider
from rebase_agent import StepRequest
from rebase_agent.templates import FormatTemplate, JinjaChatTemplate, PromptTemplate
from tests.providers.openai_compat.fake_server import FakeApp, serve

CHAT = (
    "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def http(template: Any) -> str:
    """The HTTP provider's prompt prefix for problem ``P``."""
    from providers.openai_compat.templates import coerce_template, prompt_prefix

    made = coerce_template(template)
    return anyio.run(prompt_prefix, made, "P", None, "m")


def llama(template: Any) -> str:
    """The llama.cpp provider's prompt prefix for problem ``P``."""
    pytest.importorskip("llama_cpp")
    from providers.llamacpp.templates import resolve_template

    made = resolve_template(
        template, chat=False, model_template=None, token_text=lambda t: "", bos=1, eos=2
    )
    return made.render("P", "")


PROVIDERS: list[Callable[[Any], str]] = [http, llama]


class Shout:
    def render(self, problem: str, solution: str) -> str:
        return problem.upper() + "!" + solution


@pytest.mark.parametrize("prefix", PROVIDERS)
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Q: {problem}\nA:", "Q: P\nA:"),
        ("Q: {problem}\nA: {solution}", "Q: P\nA: "),
        ("Answer as {{n}}. {problem}\n", "Answer as {n}. P\n"),  # escapes, not Jinja
        ("{{ messages[0].content }}>", "P>"),
        (CHAT, "<user>P<assistant>"),
        (FormatTemplate("[{problem}]"), "[P]"),
        (JinjaChatTemplate(CHAT, system_prompt="S"), "<system>S<user>P<assistant>"),
        (Shout(), "P!"),
    ],
)
def test_both_providers_render_the_same_kinds_of_template(
    prefix: Callable[[Any], str], template: Any, expected: str
) -> None:
    assert prefix(template) == expected


@pytest.mark.parametrize("prefix", PROVIDERS)
@pytest.mark.parametrize(
    ("template", "error", "message"),
    [
        ("Q: {question}", ValueError, r"format template 'Q: \{question\}': unknown placeholder"),
        ("no field at all", ValueError, r"needs a \{problem\} field"),
        ("{% if %}{{ x }}", ValueError, r"chat template '\{% if %\}\{\{ x \}\}': Jinja syntax"),
        ("{{ raise_exception('no') }}", ValueError, "does not render a conversation"),
        (42, TypeError, "template must be a str"),
    ],
)
def test_both_providers_refuse_a_bad_template_when_coercing(
    prefix: Callable[[Any], str], template: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        prefix(template)


def test_the_http_provider_keeps_server_templates_and_defaults_to_the_problem() -> None:
    from providers.openai_compat.templates import (
        ServerChatTemplate,
        ServerTemplate,
        coerce_template,
    )

    server = ServerChatTemplate()
    assert coerce_template(server) is server and isinstance(server, ServerTemplate)
    assert not isinstance(server, PromptTemplate)
    default = coerce_template(None)
    assert isinstance(default, FormatTemplate) and default.render("P", "s") == "P\n\ns"
    chat = coerce_template("{{ messages[0].content }}", system_prompt="S")
    assert (
        isinstance(chat, JinjaChatTemplate)
        and chat.render_messages([{"role": "user", "content": "x"}]) == "x"
    )


def test_the_llama_provider_keeps_its_default_and_earlier_names() -> None:
    pytest.importorskip("llama_cpp")
    from providers.llamacpp.templates import (
        DEFAULT_COMPLETION_TEMPLATE,
        ChatTemplate,
        CompletionTemplate,
        resolve_template,
    )

    made = resolve_template(None, chat=False, model_template=None, token_text=str, bos=1, eos=2)
    assert isinstance(made, CompletionTemplate) and isinstance(made, FormatTemplate)
    assert made.fmt == DEFAULT_COMPLETION_TEMPLATE
    chat = resolve_template(
        None, chat=True, model_template=CHAT, token_text=lambda t: f"<{t}>", bos=1, eos=2
    )
    assert isinstance(chat, ChatTemplate) and isinstance(chat, JinjaChatTemplate)
    assert chat.render("P", "s") == "<1><user>P<assistant>s"
    assert ChatTemplate(CHAT, system="S").render("P", "") == "<system>S<user>P<assistant>"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("template", "prompt"),
    [
        ("Q: {problem} {{x}}\nA: {solution}", "Q: 2+2? {x}\nA: a\n\n"),
        (
            "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<a>",
            "<system>S<user>2+2?<a>a\n\n",
        ),
    ],
)
async def test_the_http_provider_takes_a_string_template(template: str, prompt: str) -> None:
    app = FakeApp()
    async with (
        serve(app) as url,
        OpenAIProvider("m", url, template=template, system_prompt="S") as provider,
    ):
        await provider.generate(StepRequest(problem="2+2?", steps=("a\n\n",)))
    assert app.requests[0].body["prompt"] == prompt


def test_a_bad_string_template_fails_in_the_http_providers_constructor() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{question\}"):
        OpenAIProvider("m", "http://127.0.0.1:9/v1", template="Q: {question}")
