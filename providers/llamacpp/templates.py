"""Prompt rendering: a plain completion template for base models, or a chat template.

A template turns ``(problem, solution so far)`` into the prompt text the model continues. The
solution always comes last, verbatim, so the model's next tokens are the next step.

* :class:`CompletionTemplate`: a Python format string with ``{problem}`` and ``{solution}``. The
  default, :data:`DEFAULT_COMPLETION_TEMPLATE`, suits base models such as Gemma 3 270M::

      Question: {problem}
      Answer: Let's think step by step.

      {solution}

  Steps are separated by blank lines (the default step delimiter ``"\\n\\n"``), and the first step
  starts right after the blank line that ends the header.
* :class:`ChatTemplate`: a Jinja chat template (the GGUF's ``tokenizer.chat_template`` or the
  user's), rendered with the problem as the user turn and the generation prompt on, then the
  solution appended as the start of the assistant's reply.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol, runtime_checkable

from rebase_agent.presets import PRESETS

__all__ = (
    "DEFAULT_COMPLETION_TEMPLATE",
    "DEFAULT_JUDGE_TEMPLATE",
    "FEW_SHOT_STEPS_TEMPLATE",
    "ChatTemplate",
    "CompletionTemplate",
    "PromptTemplate",
    "resolve_template",
)

DEFAULT_COMPLETION_TEMPLATE = "Question: {problem}\nAnswer: Let's think step by step.\n\n{solution}"
"""The plain completion prompt used for base models."""

FEW_SHOT_STEPS_TEMPLATE = PRESETS["few_shot_steps"].completion_format
"""The embedded default's plain completion prompt (Gemma 3 270M, a base model): the
``few_shot_steps`` preset of :mod:`rebase_agent.presets`, four worked examples that show the step
format (one step per paragraph, each with its arithmetic written out, then ``The answer is N.``),
which keeps its solutions short, parseable and checkable. The bare expression took the
plain-arithmetic questions of ``benchmarks/data/everyday.jsonl`` from 2 to 7 of 12 right (with
temperature 0.7, top-k 40); the one-step word problem keeps the model from adding a second step
to a problem that needs one."""

DEFAULT_JUDGE_TEMPLATE = (
    "Below is a math problem and a solution, step by step. Decide whether the last step is "
    "correct.\n\nProblem: {problem}\n\nSolution:\n{previous}{step}\n\n"
    "Is the last step correct (Yes or No)? Answer:"
)
"""The LLM-as-judge prompt of :class:`~providers.llamacpp.LlamaCppScorer` (``{previous}`` is the
steps before the one judged, ``{step}`` the judged step)."""


@runtime_checkable
class PromptTemplate(Protocol):
    """Renders a problem and a partial solution into the text the model continues."""

    def render(self, problem: str, solution: str) -> str:
        """The prompt text; it must end with ``solution`` verbatim."""
        ...


class CompletionTemplate:
    """A Python format string with the fields ``{problem}`` and ``{solution}``.

    Raises:
        ValueError: A field is missing, or ``{solution}`` is not at the very end.
    """

    def __init__(self, fmt: str = DEFAULT_COMPLETION_TEMPLATE) -> None:
        if "{problem}" not in fmt or not fmt.endswith("{solution}"):
            raise ValueError(
                "a completion template needs {problem} and must end with {solution}: " + repr(fmt)
            )
        self.fmt = fmt

    def render(self, problem: str, solution: str) -> str:
        """Fill in the fields."""
        return self.fmt.format(problem=problem, solution=solution)

    def __repr__(self) -> str:
        return f"CompletionTemplate({self.fmt!r})"


def _raise(message: str) -> None:
    raise ValueError(f"chat template error: {message}")


class ChatTemplate:
    """A Jinja chat template (Hugging Face conventions: ``messages``, ``add_generation_prompt``,
    ``bos_token``, ``eos_token``), rendered in a sandbox.

    Args:
        source: The Jinja source.
        bos_token: Text of the model's BOS token, for templates that print it.
        eos_token: Text of the model's EOS token.
        system: An optional system message.
    """

    def __init__(
        self, source: str, *, bos_token: str = "", eos_token: str = "", system: str | None = None
    ) -> None:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self._template = env.from_string(source)
        self.source = source
        self.bos_token, self.eos_token, self.system = bos_token, eos_token, system

    def render(self, problem: str, solution: str) -> str:
        """The conversation up to the assistant's reply, then ``solution``."""
        messages = [{"role": "user", "content": problem}]
        if self.system:
            messages.insert(0, {"role": "system", "content": self.system})
        head = self._template.render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )
        return head + solution


def resolve_template(
    template: str | PromptTemplate | None,
    *,
    chat: bool,
    model_template: str | None,
    token_text: Callable[[int], str],
    bos: int,
    eos: int,
) -> PromptTemplate:
    """Pick the prompt template for a model.

    Args:
        template: ``None`` (chat: the model's own template; else the default completion
            template), a :class:`PromptTemplate`, or a string: a Jinja chat template when it
            contains ``{%`` or ``{{``, else a format string with ``{problem}`` and ``{solution}``.
        chat: Use a chat template when ``template`` is ``None``.
        model_template: The GGUF's chat template, if any.
        token_text: Text of a token id, to fill ``bos_token``/``eos_token``.
        bos: The model's BOS id.
        eos: The model's EOS id.

    Raises:
        ValueError: ``chat=True`` with no template and a model without one.
    """
    if isinstance(template, PromptTemplate):
        return template
    if template is None:
        if not chat:
            return CompletionTemplate()
        if model_template is None:
            raise ValueError(
                "chat=True but the model has no chat template in its GGUF metadata: pass "
                "template=... (a Jinja chat template or a format string), or chat=False"
            )
        template = model_template
    if "{%" in template or "{{" in template:
        return ChatTemplate(template, bos_token=token_text(bos), eos_token=token_text(eos))
    return CompletionTemplate(template)
