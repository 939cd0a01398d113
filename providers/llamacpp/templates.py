"""Prompt rendering for the llama.cpp provider: the core's templates, and the defaults.

A template turns ``(problem, solution so far)`` into the prompt text the model continues; the
solution always comes last, verbatim, so the model's next tokens are the next step. The kinds are
the core's (:mod:`rebase_agent.templates`), the same the HTTP provider takes:

* a format string with ``{problem}`` and ``{solution}`` (:class:`FormatTemplate`). The default,
  :data:`DEFAULT_COMPLETION_TEMPLATE`, suits base models such as Gemma 3 270M::

      Question: {problem}
      Answer: Let's think step by step.

      {solution}

  Steps are separated by blank lines (the default step delimiter ``"\\n\\n"``), and the first
  step starts right after the blank line that ends the header.
* a Jinja chat template (:class:`JinjaChatTemplate`: the GGUF's ``tokenizer.chat_template`` or
  the user's), rendered with the problem as the user turn and the generation prompt on, then the
  solution appended as the start of the assistant's reply.

:func:`resolve_template` picks one for a model; :class:`CompletionTemplate` and
:class:`ChatTemplate` are their earlier names here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rebase_agent.presets import PRESETS
from rebase_agent.prm import JUDGE_PROMPT
from rebase_agent.templates import (
    FormatTemplate,
    JinjaChatTemplate,
    PromptTemplate,
    is_jinja_template,
)

__all__ = (
    "DEFAULT_COMPLETION_TEMPLATE",
    "DEFAULT_JUDGE_TEMPLATE",
    "FEW_SHOT_STEPS_TEMPLATE",
    "POLICY_JUDGE_QUESTION",
    "ChatTemplate",
    "CompletionTemplate",
    "FormatTemplate",
    "JinjaChatTemplate",
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

DEFAULT_JUDGE_TEMPLATE = JUDGE_PROMPT
"""The LLM-as-judge prompt of :class:`~providers.llamacpp.LlamaCppScorer`:
:data:`rebase_agent.prm.JUDGE_PROMPT` (``{previous}`` is the steps before the one judged,
``{step}`` the judged step)."""

POLICY_JUDGE_QUESTION = "\nIs the last step correct (Yes or No)? Answer:"
"""The question a judge on the policy's prompt (``judge_prefix`` of
:class:`~providers.llamacpp.LlamaCppScorer`) asks after the policy's own prompt of the solution
so far."""


class CompletionTemplate(FormatTemplate):
    """:class:`~rebase_agent.templates.FormatTemplate` under its earlier name here, whose default
    is :data:`DEFAULT_COMPLETION_TEMPLATE`.

    Raises:
        ValueError: No ``{problem}`` field, an unknown placeholder, or ``{solution}`` not at the
            very end.
    """

    def __init__(self, fmt: str = DEFAULT_COMPLETION_TEMPLATE) -> None:
        super().__init__(fmt)

    @property
    def fmt(self) -> str:
        """The format string."""
        return self.source


class ChatTemplate(JinjaChatTemplate):
    """:class:`~rebase_agent.templates.JinjaChatTemplate` under its earlier name here.

    Args:
        source: The Jinja source.
        bos_token: Text of the model's BOS token, for templates that print it.
        eos_token: Text of the model's EOS token.
        system: An optional system message (``system_prompt`` of the core class).
        **variables: More template variables.
    """

    def __init__(
        self,
        source: str,
        *,
        bos_token: str = "",
        eos_token: str = "",
        system: str | None = None,
        **variables: Any,
    ) -> None:
        super().__init__(
            source, system_prompt=system, bos_token=bos_token, eos_token=eos_token, **variables
        )

    @property
    def system(self) -> str | None:
        """The system message."""
        return self.system_prompt


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
        template: ``None`` (chat: the model's own template; else
            :data:`DEFAULT_COMPLETION_TEMPLATE`), a :class:`PromptTemplate`, or a string: a Jinja
            chat template or a format string with ``{problem}`` and ``{solution}``, told apart
            by :func:`rebase_agent.templates.is_jinja_template` (a format string with ``{{``
            escapes stays a format string).
        chat: Use a chat template when ``template`` is ``None``.
        model_template: The GGUF's chat template, if any.
        token_text: Text of a token id, to fill ``bos_token``/``eos_token``.
        bos: The model's BOS id.
        eos: The model's EOS id.

    Raises:
        ValueError: ``chat=True`` with no template and a model without one; or a bad template
            string (the message quotes it and names the problem: an unknown placeholder, a Jinja
            syntax error, a template that does not render).
        TypeError: ``template`` is not a template.
    """
    if template is None:
        if not chat:
            return CompletionTemplate()
        if model_template is None:
            raise ValueError(
                "chat=True but the model has no chat template in its GGUF metadata: pass "
                "template=... (a Jinja chat template or a format string), or chat=False"
            )
        template = model_template
    if isinstance(template, str):
        if is_jinja_template(template):
            return ChatTemplate(template, bos_token=token_text(bos), eos_token=token_text(eos))
        return CompletionTemplate(template)
    if isinstance(template, PromptTemplate):
        return template
    raise TypeError(
        "template must be a str (a format or Jinja chat template) or an object with "
        f"render(problem, solution), got {type(template).__name__}"
    )
