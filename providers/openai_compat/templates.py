"""Prompt templates for raw continuation: render the text that comes before the solution.

A template renders the prompt *prefix* for a problem; the provider appends the partial solution
(``"".join(steps)``) to it, so every request for one problem shares the same prefix and servers
with prefix caching (vLLM, SGLang, llama-server) reuse it. Three kinds:

- :class:`FormatTemplate`: a plain ``str.format`` string with a ``{problem}`` field.
- :class:`JinjaChatTemplate`: a model's chat template (Jinja, as in ``tokenizer_config.json``),
  rendered here with the generation prompt added.
- :class:`ServerChatTemplate`: the server's own chat template, via llama-server's
  ``POST /apply-template``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rebase_agent.exceptions import ProviderError

if TYPE_CHECKING:
    from providers.openai_compat.endpoints import Endpoint, EndpointPool

__all__ = (
    "FormatTemplate",
    "JinjaChatTemplate",
    "PromptTemplate",
    "ServerChatTemplate",
    "chat_messages",
)


def chat_messages(problem: str, system_prompt: str | None) -> list[dict[str, str]]:
    """The opening of a conversation: an optional system message, then the problem."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": problem})
    return messages


@runtime_checkable
class PromptTemplate(Protocol):
    """Renders the prompt that precedes the partial solution."""

    async def render_prefix(self, problem: str, endpoints: EndpointPool, model: str) -> str:
        """Return the prompt text up to where the solution starts."""
        ...


class FormatTemplate:
    """A ``str.format`` template with a ``{problem}`` field.

    Args:
        template: For example ``"Question: {problem}\\nAnswer: Let's think step by step.\\n"``.

    Example:
        >>> import anyio
        >>> anyio.run(FormatTemplate("Q: {problem}\\nA:").render_prefix, "1+1?", None, "m")
        'Q: 1+1?\\nA:'
    """

    def __init__(self, template: str = "{problem}\n\n") -> None:
        if "{problem}" not in template:
            raise ValueError(f"template needs a '{{problem}}' field, got {template!r}")
        self.template = template

    async def render_prefix(self, problem: str, endpoints: EndpointPool | None, model: str) -> str:
        """Fill ``{problem}`` in."""
        return self.template.format(problem=problem)


class JinjaChatTemplate:
    """A Hugging Face-style Jinja chat template, rendered with the generation prompt.

    Needs ``jinja2`` (``pip install jinja2``). The template sees ``messages``,
    ``add_generation_prompt=True``, ``bos_token``, ``eos_token`` and any extra ``variables``
    (e.g. ``enable_thinking=False``), in a sandbox, as ``transformers`` renders it.

    Args:
        template: The ``chat_template`` string from the model's tokenizer config.
        system_prompt: Optional system message before the problem.
        bos_token: Text of the BOS token, if the template writes it (often it should not,
            when the server adds BOS itself).
        eos_token: Text of the EOS token.
        variables: More template variables.
    """

    def __init__(
        self,
        template: str,
        *,
        system_prompt: str | None = None,
        bos_token: str = "",
        eos_token: str = "",
        **variables: Any,
    ) -> None:
        try:
            from jinja2.exceptions import TemplateError
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("JinjaChatTemplate needs jinja2: pip install jinja2") from exc

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        self._template = env.from_string(template)
        self.system_prompt = system_prompt
        self._variables = {"bos_token": bos_token, "eos_token": eos_token, **variables}

    def render_messages(
        self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True
    ) -> str:
        """Render a conversation with the template."""
        return str(
            self._template.render(
                messages=messages, add_generation_prompt=add_generation_prompt, **self._variables
            )
        )

    async def render_prefix(self, problem: str, endpoints: EndpointPool | None, model: str) -> str:
        """Render the system and user turns and open the assistant turn."""
        return self.render_messages(chat_messages(problem, self.system_prompt))


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
