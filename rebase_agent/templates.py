"""Prompt templates: the text a policy model continues, for every provider.

A template renders ``(problem, solution so far)`` into a prompt that ends with the solution
verbatim, so the model's next tokens are the next step, and every request for one problem shares
the prefix ``render(problem, "")`` (which servers and the llama.cpp engine reuse from their KV
caches). Providers take the same three kinds of template (see :func:`coerce_template`):

- a :class:`FormatTemplate`: a ``str.format`` string with a ``{problem}`` field and, optionally,
  ``{solution}`` at its very end (literal braces are written ``{{`` and ``}}``);
- a :class:`JinjaChatTemplate`: a model's chat template (Jinja, Hugging Face conventions),
  rendered with the problem as the user turn and the generation prompt on;
- any object with the :class:`PromptTemplate` method ``render(problem, solution)``.

A bad template fails when it is built, with a :class:`ValueError` naming the template and the
problem (an unknown placeholder, a Jinja syntax error, a template that fails to render), never
later, in a worker thread, in the middle of a search.

Example:
    >>> coerce_template("Q: {problem}\\nA: {solution}").render("1+1?", "2")
    'Q: 1+1?\\nA: 2'
    >>> coerce_template("Reply as {{answer}}. {problem}").render("1+1?", "")
    'Reply as {answer}. 1+1?'
"""

from __future__ import annotations

import string
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

__all__ = (
    "FormatTemplate",
    "JinjaChatTemplate",
    "PromptTemplate",
    "chat_messages",
    "coerce_template",
    "describe",
    "is_jinja_template",
)

_FIELDS = ("problem", "solution")


@runtime_checkable
class PromptTemplate(Protocol):
    """Renders a problem and a partial solution into the text the model continues."""

    def render(self, problem: str, solution: str) -> str:
        """The prompt text; it ends with ``solution`` verbatim."""
        ...


def describe(source: str, limit: int = 60) -> str:
    """A short quotation of a template's source, for error messages."""
    return repr(source if len(source) <= limit else source[: limit - 3] + "...")


def chat_messages(problem: str, system_prompt: str | None) -> list[dict[str, str]]:
    """The opening of a conversation: an optional system message, then the problem."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": problem})
    return messages


def _format_fields(source: str) -> list[tuple[str, str, str | None]]:
    """``(field, format_spec, conversion)`` of each replacement field of a format string.

    Raises:
        ValueError: The string is not a valid format string (a single ``{`` or ``}``).
    """
    return [
        (field, spec or "", conversion)
        for _, field, spec, conversion in string.Formatter().parse(source)
        if field is not None
    ]


def is_jinja_template(source: str) -> bool:
    """Whether ``source`` is a Jinja template rather than a ``str.format`` template.

    A valid format string with a ``{problem}`` field and no fields but ``{problem}`` and
    ``{solution}`` is a format template, even with ``{{``/``}}`` escapes in it; any other string
    with ``{{``, ``{%`` or ``{#`` is a Jinja template; the rest are (bad) format templates.
    """
    if _is_format(source):
        return False
    return any(mark in source for mark in ("{{", "{%", "{#"))


def _is_format(source: str) -> bool:
    try:
        names = {_base(field) for field, _, _ in _format_fields(source)}
    except ValueError:
        return False
    return "problem" in names and names <= set(_FIELDS)


def _base(field: str) -> str:
    """The argument name of a replacement field (``problem`` of ``problem.upper``)."""
    for stop in ".[":
        field = field.partition(stop)[0]
    return field


class FormatTemplate:
    """A ``str.format`` template with a ``{problem}`` field and, optionally, ``{solution}`` last.

    The solution always follows the prompt, so ``{solution}`` may only be the very end (and may
    be left out: ``"Q: {problem}\\nA:"`` renders the same as ``"Q: {problem}\\nA:{solution}"``).

    Args:
        source: For example ``"Question: {problem}\\nAnswer: Let's think step by step.\\n\\n"``.

    Raises:
        ValueError: Not a valid format string, no ``{problem}`` field, an unknown placeholder
            (any field but ``{problem}`` and ``{solution}``), or ``{solution}`` not at the very
            end; the message quotes the template.

    Example:
        >>> FormatTemplate("Q: {problem}\\nA: ").render("1+1?", "2")
        'Q: 1+1?\\nA: 2'
    """

    def __init__(self, source: str = "{problem}\n\n") -> None:
        if not isinstance(source, str):
            raise TypeError(f"a format template is a str, got {type(source).__name__}")
        where = f"format template {describe(source)}"
        try:
            fields = _format_fields(source)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc} (write literal braces as {{{{ and }}}})") from exc
        for field, _, _ in fields:
            if _base(field) not in _FIELDS:
                shown = "{" + field + "}"
                hint = (
                    " (positional fields are not allowed)" if not field or field.isdigit() else ""
                )
                raise ValueError(
                    f"{where}: unknown placeholder {shown}{hint}; the fields are {{problem}} and "
                    "{solution} (write literal braces as {{ and }})"
                )
        names = [_base(field) for field, _, _ in fields]
        if "problem" not in names:
            raise ValueError(f"{where}: needs a {{problem}} field")
        if "solution" in names:
            last_field, spec, conversion = fields[-1]
            if (
                names.count("solution") > 1
                or last_field != "solution"
                or spec
                or conversion
                or not source.endswith("{solution}")
            ):
                raise ValueError(
                    f"{where}: {{solution}} may only come last, once (the solution always "
                    "follows the prompt)"
                )
        self.source = source
        self._prefix = source.removesuffix("{solution}")
        try:
            self._prefix.format(problem="")
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise ValueError(f"{where}: does not render: {exc}") from exc

    def render(self, problem: str, solution: str) -> str:
        """Fill ``{problem}`` in and append ``solution``."""
        return self._prefix.format(problem=problem) + solution

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r})"


def _raise_exception(message: str) -> None:
    raise ValueError(f"chat template error: {message}")


class JinjaChatTemplate:
    """A Hugging Face-style Jinja chat template, rendered in a sandbox.

    The template sees ``messages`` (an optional system turn, then the problem as the user turn),
    ``add_generation_prompt=True``, ``bos_token``, ``eos_token``, ``raise_exception``,
    ``strftime_now`` and any extra ``variables`` (e.g. ``enable_thinking=False``), as
    ``transformers`` renders it; the solution is appended after the rendered text, as the start
    of the assistant's reply. Needs ``jinja2``.

    Args:
        source: The Jinja source (a model's ``chat_template``).
        system_prompt: An optional system message before the problem.
        bos_token: Text of the BOS token, for templates that print it (the llama.cpp provider
            then adds no second BOS).
        eos_token: Text of the EOS token.
        **variables: More template variables.

    Raises:
        ValueError: A Jinja syntax error, or the template fails to render a conversation (for
            example it calls ``raise_exception``); the message quotes the template.
        ImportError: ``jinja2`` is not installed.
    """

    def __init__(
        self,
        source: str,
        *,
        system_prompt: str | None = None,
        bos_token: str = "",
        eos_token: str = "",
        **variables: Any,
    ) -> None:
        try:
            from jinja2.exceptions import TemplateError, TemplateSyntaxError
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("a Jinja chat template needs jinja2: pip install jinja2") from exc
        if not isinstance(source, str):
            raise TypeError(f"a chat template is a str, got {type(source).__name__}")
        where = f"chat template {describe(source)}"
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.from_string(source)
        except TemplateSyntaxError as exc:
            raise ValueError(
                f"{where}: Jinja syntax error on line {exc.lineno}: {exc.message}"
            ) from exc
        self.source = source
        self.system_prompt = system_prompt
        self.bos_token, self.eos_token = bos_token, eos_token
        self._variables = {"bos_token": bos_token, "eos_token": eos_token, **variables}
        try:
            self.render("Problem?", "")
        except (TemplateError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise ValueError(f"{where}: does not render a conversation: {exc}") from exc

    def render_messages(
        self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True
    ) -> str:
        """Render a conversation with the template."""
        return str(
            self._template.render(
                messages=messages, add_generation_prompt=add_generation_prompt, **self._variables
            )
        )

    def render(self, problem: str, solution: str) -> str:
        """The conversation up to the assistant's reply, then ``solution``."""
        return self.render_messages(chat_messages(problem, self.system_prompt)) + solution

    def __repr__(self) -> str:
        return f"{type(self).__name__}({describe(self.source)})"


def coerce_template(
    template: str | PromptTemplate,
    *,
    system_prompt: str | None = None,
    bos_token: str = "",
    eos_token: str = "",
) -> PromptTemplate:
    """The :class:`PromptTemplate` that ``template`` describes.

    Args:
        template: A template object (returned as it is), or a string: a Jinja chat template
            when :func:`is_jinja_template` says so, else a :class:`FormatTemplate`.
        system_prompt: The system message of a Jinja chat template.
        bos_token: Text of the BOS token, for a Jinja chat template.
        eos_token: Text of the EOS token, for a Jinja chat template.

    Raises:
        ValueError: A bad template string (see :class:`FormatTemplate` and
            :class:`JinjaChatTemplate`).
        TypeError: Neither a string nor an object with ``render(problem, solution)``.
    """
    if isinstance(template, str):
        if is_jinja_template(template):
            return JinjaChatTemplate(
                template, system_prompt=system_prompt, bos_token=bos_token, eos_token=eos_token
            )
        return FormatTemplate(template)
    if isinstance(template, PromptTemplate):
        return template
    raise TypeError(
        "template must be a str (a format or Jinja chat template) or an object with "
        f"render(problem, solution), got {type(template).__name__}"
    )
