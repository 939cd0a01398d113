"""The core's prompt templates: format and Jinja chat templates, told apart, checked when built."""

from __future__ import annotations

import pytest

from rebase_agent.templates import (
    FormatTemplate,
    JinjaChatTemplate,
    PromptTemplate,
    coerce_template,
    is_jinja_template,
)

CHAT = (
    "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


@pytest.mark.parametrize(
    ("source", "jinja"),
    [
        ("Q: {problem}\nA:", False),
        ("Q: {problem}\nA: {solution}", False),
        ("Answer as {{x: 1}}. {problem}\n", False),  # escapes: still a format template
        ("{{ messages[0].content }}", True),
        (CHAT, True),
        ("{# a comment #}{{ messages[0].content }}", True),
        ("{question}", False),  # a bad format template, not Jinja
    ],
)
def test_jinja_is_told_from_format(source: str, jinja: bool) -> None:
    assert is_jinja_template(source) is jinja


def test_a_format_template_renders_the_problem_then_the_solution() -> None:
    template = coerce_template("Q: {problem}\nA: {solution}")
    assert isinstance(template, FormatTemplate) and isinstance(template, PromptTemplate)
    assert template.render("1+1?", "2") == "Q: 1+1?\nA: 2"
    assert coerce_template("Q: {problem}\nA: ").render("1+1?", "2") == "Q: 1+1?\nA: 2"


def test_format_escapes_render_as_single_braces() -> None:
    template = coerce_template("Reply as {{n}}. {problem} {{ end }}\n{solution}")
    assert isinstance(template, FormatTemplate)
    assert template.render("1+1?", "s") == "Reply as {n}. 1+1? { end }\ns"


def test_a_jinja_chat_template_renders_the_conversation_then_the_solution() -> None:
    template = coerce_template(CHAT, bos_token="<s>", system_prompt="Be brief.")
    assert isinstance(template, JinjaChatTemplate)
    assert template.render("1+1?", "2") == "<s><system>Be brief.<user>1+1?<assistant>2"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("Q: {question}", r"format template 'Q: \{question\}': unknown placeholder \{question\}"),
        ("{problem} {answer.x}", r"unknown placeholder \{answer.x\}"),
        ("{} {problem}", r"unknown placeholder \{\} \(positional fields are not allowed\)"),
        ("Q: {problem", r"format template 'Q: \{problem': expected '\}' before end of string"),
        ("Q: } {problem}", "Single '}' encountered"),
        ("no field", r"format template 'no field': needs a \{problem\} field"),
        ("{solution} then {problem}", r"\{solution\} may only come last"),
        ("{problem}{solution}{solution}", r"\{solution\} may only come last, once"),
        ("{problem:d}", "does not render: Unknown format code 'd'"),
    ],
)
def test_a_bad_format_template_fails_when_built(source: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        coerce_template(source)
    with pytest.raises(ValueError, match=message):
        FormatTemplate(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{% for m in messages %}{{ m.content }}",
            r"chat template '\{% for m in messages %\}\{\{ m.content \}\}': Jinja syntax error "
            "on line 1: Unexpected end of template",
        ),
        ("{{ messages[0].content }}{% if %}", "Jinja syntax error on line 1"),
        (
            "{{ raise_exception('Conversation roles must alternate') }}",
            "does not render a conversation: chat template error: Conversation roles must",
        ),
        ("{{ messages[5].content.upper() }}", "does not render a conversation"),
    ],
)
def test_a_bad_jinja_template_fails_when_built(source: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        coerce_template(source)


def test_a_long_template_is_quoted_short_in_errors() -> None:
    source = "Q: {question} " + "x" * 500
    with pytest.raises(ValueError) as info:
        coerce_template(source)
    assert "..." in str(info.value) and len(str(info.value)) < 250


def test_a_template_object_is_taken_as_it_is_and_anything_else_refused() -> None:
    class Upper:
        def render(self, problem: str, solution: str) -> str:
            return problem.upper() + solution

    mine = Upper()
    assert coerce_template(mine) is mine
    with pytest.raises(TypeError, match=r"template must be a str .* got int"):
        coerce_template(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a format template is a str, got bytes"):
        FormatTemplate(b"{problem}")  # type: ignore[arg-type]
