"""Prompt presets: how a policy model is asked for a solution, one step per paragraph.

A preset is the prompt and the search fields that go with it, in one place, for any backend:

- ``few_shot_steps`` (base models): four worked examples in the step format, then the problem.
  The embedded default's prompt (``providers.llamacpp.templates.FEW_SHOT_STEPS_TEMPLATE``,
  copied here word for word), with its search fields (short steps, few of them, temperature
  0.7) and its top-k 40. A base model without examples rarely states an answer, so every path
  runs to ``max_depth`` × ``max_step_tokens``.
- ``plain`` (base models): ``Question: ...`` / ``Answer: Let's think step by step.``, no examples.
- ``chat_steps`` (chat models): a system prompt that asks for the same format (a blank line
  between steps, the arithmetic written out, ``The answer is N.`` at the end).

:func:`resolve_preset` takes a preset name or the path of a text file (a base-model prompt with
a ``{problem}`` field, optionally ending in ``{solution}``). The core never imports a provider:
backends read :attr:`Preset.prefix`, :attr:`Preset.completion_format` (the same prompt as a
``{problem}``/``{solution}`` :class:`~rebase_agent.templates.FormatTemplate`) or
:attr:`Preset.system_prompt`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rebase_agent.templates import FormatTemplate

__all__ = ("PRESETS", "Preset", "PresetKind", "preset_names", "resolve_preset")

PresetKind = Literal["base", "chat"]

_FEW_SHOT_STEPS = (
    "Question: What is 8 * 6?\n"
    "Answer:\n\n"
    "Step 1: 8 * 6 = 48.\n\n"
    "The answer is 48.\n\n\n"
    "Question: A bag holds 5 apples. How many apples are in 3 bags?\n"
    "Answer:\n\n"
    "Step 1: 3 bags hold 3 * 5 = 15 apples.\n\n"
    "The answer is 15.\n\n\n"
    "Question: A pen costs 3 dollars. How much do 4 pens and a 2-dollar notebook cost?\n"
    "Answer:\n\n"
    "Step 1: 4 pens cost 4 * 3 = 12 dollars.\n\n"
    "Step 2: With the notebook, 12 + 2 = 14 dollars.\n\n"
    "The answer is 14.\n\n\n"
    "Question: Sam had 10 apples, ate 4 and bought 5. How many does he have?\n"
    "Answer:\n\n"
    "Step 1: After eating, 10 - 4 = 6 apples.\n\n"
    "Step 2: After buying, 6 + 5 = 11 apples.\n\n"
    "The answer is 11.\n\n\n"
    "Question: {problem}\nAnswer:\n\n"
)

_CHAT_STEPS = (
    "Solve the problem step by step. Write each step as one short paragraph and leave a blank "
    "line between steps. Write out the arithmetic of every step (for example 4 * 3 = 12). "
    "End with a last paragraph of the form: The answer is N."
)


class Preset(BaseModel):
    """A prompt for the policy and the search fields that suit it.

    Attributes:
        name: The preset's name (or the file it came from).
        kind: ``base`` (a raw prompt the model continues) or ``chat`` (a system prompt).
        description: One line, for listings.
        prefix: Base presets: the prompt up to where the solution starts, with ``{problem}``.
        system_prompt: Chat presets: the system message.
        search_defaults: :class:`~rebase_agent.RebaseConfig` fields to apply under the user's.
        top_k: Sample among the ``top_k`` likeliest tokens (``None``: the server's default).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kind: PresetKind
    description: str = ""
    prefix: str | None = None
    system_prompt: str | None = None
    search_defaults: dict[str, Any] = Field(default_factory=dict)
    top_k: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _prompt_matches_kind(self) -> Preset:
        if self.kind == "base":
            if self.prefix is None or "{problem}" not in self.prefix:
                raise ValueError(f"base preset {self.name!r} needs a prefix with '{{problem}}'")
            if "{solution}" in self.prefix:
                raise ValueError(f"preset {self.name!r}: the prefix ends before '{{solution}}'")
            FormatTemplate(self.prefix)  # a bad placeholder or brace fails here, named
        elif not self.system_prompt:
            raise ValueError(f"chat preset {self.name!r} needs a system_prompt")
        return self

    @property
    def completion_format(self) -> str:
        """The prompt as a ``{problem}``/``{solution}`` format string (base presets), for a
        :class:`~rebase_agent.templates.FormatTemplate`."""
        if self.prefix is None:
            raise ValueError(f"chat preset {self.name!r} has no completion format")
        return self.prefix + "{solution}"

    def render_prefix(self, problem: str) -> str:
        """The prompt for ``problem``, up to where the solution starts (base presets)."""
        if self.prefix is None:
            raise ValueError(f"chat preset {self.name!r} has no raw prompt")
        return self.prefix.format(problem=problem)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="few_shot_steps",
            kind="base",
            description="four worked examples in the step format (the embedded default's)",
            prefix=_FEW_SHOT_STEPS,
            search_defaults={"max_depth": 6, "max_step_tokens": 48, "temperature": 0.7},
            top_k=40,
        ),
        Preset(
            name="plain",
            kind="base",
            description="Question/Answer with 'Let's think step by step.', no examples",
            prefix="Question: {problem}\nAnswer: Let's think step by step.\n\n",
        ),
        Preset(
            name="chat_steps",
            kind="chat",
            description="a system prompt asking for blank-line steps and 'The answer is N.'",
            system_prompt=_CHAT_STEPS,
            search_defaults={"max_depth": 12, "max_step_tokens": 160},
        ),
    )
}
"""The built-in presets by name."""


def preset_names() -> list[str]:
    """The names :func:`resolve_preset` knows."""
    return sorted(PRESETS)


def resolve_preset(name_or_path: str) -> Preset:
    """The preset ``name_or_path`` names, or one read from a text file.

    A file holds a base-model prompt with a ``{problem}`` field; a trailing ``{solution}`` is
    dropped (the solution always follows the prompt). Literal braces are written ``{{``/``}}``.

    Raises:
        ValueError: Neither a preset name nor a readable file, or a file without
            ``{problem}``; the message names the value and the known presets.
    """
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ValueError(
            f"template must be a preset name ({', '.join(preset_names())}) or a file, "
            f"got {name_or_path!r}"
        )
    text = path.read_text(encoding="utf-8").removesuffix("{solution}")
    if "{problem}" not in text:
        raise ValueError(f"template file {str(path)!r} needs a '{{problem}}' field")
    try:
        text.format(problem="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"template file {str(path)!r} is not a format string with only {{problem}}: {exc}"
        ) from exc
    return Preset(name=str(path), kind="base", description=f"from {path}", prefix=text)
