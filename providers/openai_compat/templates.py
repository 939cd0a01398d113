"""Prompt templates of the HTTP provider: the core's, plus the server's own chat template.

The raw modes (``completions``, ``ollama_raw``) send a template's prefix plus
``"".join(steps)``, so every request for one problem shares the same prefix and servers with
prefix caching (vLLM, SGLang, llama-server) reuse it. The provider takes what the llama.cpp
provider takes (see :func:`rebase_agent.templates.coerce_template`), and one kind more:

- a string: a ``str.format`` template with ``{problem}`` (:class:`FormatTemplate`), or a Jinja
  chat template (:class:`JinjaChatTemplate`), told apart by
  :func:`rebase_agent.templates.is_jinja_template`;
- any :class:`~rebase_agent.templates.PromptTemplate` (``render(problem, solution)``);
- a :class:`ServerTemplate`, rendered by the server: :class:`ServerChatTemplate`, llama-server's
  ``POST /apply-template``.

:func:`coerce_template` turns what a user passed into one of these (and fails there, with the
template and the problem named); :func:`prompt_prefix` renders it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from rebase_agent import templates as _core
from rebase_agent.exceptions import ProviderError
from rebase_agent.templates import PromptTemplate, chat_messages, is_jinja_template

if TYPE_CHECKING:
    from providers.openai_compat.endpoints import Endpoint, EndpointPool

__all__ = (
    "DEFAULT_PREFIX",
    "FormatTemplate",
    "JinjaChatTemplate",
    "PromptTemplate",
    "ServerChatTemplate",
    "ServerTemplate",
    "chat_messages",
    "coerce_template",
    "prompt_prefix",
)

DEFAULT_PREFIX = "{problem}\n\n"
"""The HTTP provider's prompt when it is given none: the problem, then a blank line."""


@runtime_checkable
class ServerTemplate(Protocol):
    """A template that a server renders (it needs the endpoints and the model name)."""

    async def render_prefix(self, problem: str, endpoints: EndpointPool, model: str) -> str:
        """Return the prompt text up to where the solution starts."""
        ...


class FormatTemplate(_core.FormatTemplate):
    """:class:`rebase_agent.templates.FormatTemplate` (default ``"{problem}\\n\\n"``).

    Example:
        >>> FormatTemplate("Q: {problem}\\nA:").render("1+1?", "")
        'Q: 1+1?\\nA:'
    """

    def __init__(self, source: str = DEFAULT_PREFIX) -> None:
        super().__init__(source)

    @property
    def template(self) -> str:
        """The format string (the former name of :attr:`source`)."""
        return self.source

    # Transitional: OpenAIProvider still awaits ``template.render_prefix(problem, endpoints,
    # model)``; drop this once it calls :func:`prompt_prefix`.
    async def render_prefix(
        self, problem: str, endpoints: EndpointPool | None = None, model: str = ""
    ) -> str:
        """The prompt up to where the solution starts."""
        return self.render(problem, "")


class JinjaChatTemplate(_core.JinjaChatTemplate):
    """:class:`rebase_agent.templates.JinjaChatTemplate`, rendered with the generation prompt."""

    # Transitional, as FormatTemplate.render_prefix.
    async def render_prefix(
        self, problem: str, endpoints: EndpointPool | None = None, model: str = ""
    ) -> str:
        """The system and user turns, and the assistant turn opened."""
        return self.render(problem, "")


class ServerChatTemplate:
    """The server's own chat template, from llama-server's ``POST /apply-template``.

    The request goes to the server root (the base URL without ``/v1``) of the least-loaded
    endpoint, with the same retries as generation.

    Args:
        system_prompt: Optional system message before the problem.
    """

    def __init__(self, *, system_prompt: str | None = None) -> None:
        self.system_prompt = system_prompt

    async def render_prefix(self, problem: str, endpoints: EndpointPool, model: str) -> str:
        """Ask the server to render the conversation with its generation prompt."""
        body = {"messages": chat_messages(problem, self.system_prompt)}

        async def op(endpoint: Endpoint) -> str:
            data = await endpoint.client.post(
                f"{endpoint.root_url}/apply-template", cast_to=object, body=body
            )
            if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
                raise ProviderError(
                    f"{endpoint.root_url}/apply-template: unexpected answer {str(data)[:200]!r}"
                )
            return str(data["prompt"])

        return await endpoints.call(op, path="/apply-template", model=model, at_root=True)


def coerce_template(
    template: str | PromptTemplate | ServerTemplate | None,
    *,
    system_prompt: str | None = None,
) -> PromptTemplate | ServerTemplate:
    """The template that ``template`` describes, for the raw modes.

    Args:
        template: ``None`` (:data:`DEFAULT_PREFIX`), a string (a Jinja chat template when
            :func:`~rebase_agent.templates.is_jinja_template` says so, else a format template
            with ``{problem}`` and optionally a trailing ``{solution}``), a
            :class:`PromptTemplate` or a :class:`ServerTemplate` (returned as they are).
        system_prompt: The system message of a Jinja chat template given as a string.

    Raises:
        ValueError: A bad template string: the message quotes it and says what is wrong (an
            unknown placeholder, a Jinja syntax error, a template that does not render).
        TypeError: Not a template.
    """
    if template is None:
        return FormatTemplate()
    if isinstance(template, str):
        if is_jinja_template(template):
            return JinjaChatTemplate(template, system_prompt=system_prompt)
        return FormatTemplate(template)
    if isinstance(template, (PromptTemplate, ServerTemplate)):
        return template
    raise TypeError(
        "template must be a str (a format or Jinja chat template), an object with "
        "render(problem, solution) or a ServerChatTemplate, got "
        f"{type(template).__name__}"
    )


async def prompt_prefix(
    template: PromptTemplate | ServerTemplate, problem: str, endpoints: EndpointPool, model: str
) -> str:
    """The prompt text up to where the solution starts, rendered here or by the server."""
    if isinstance(template, PromptTemplate):
        return template.render(problem, "")
    return await template.render_prefix(problem, endpoints, model)
