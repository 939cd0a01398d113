"""An LLM-as-judge PRM: P(Yes)/(P(Yes)+P(No)) for "is the last step correct?".

Any instruction model on any OpenAI-compatible server that returns ``top_logprobs`` can judge.
The prompt ends exactly where the label is predicted; one token is requested at temperature 0
and the score is read from the first token's top logprobs, summing spelling variants and
bounding a label missing from the top-k (:mod:`.label_probs`). For thinking models, turn
thinking off through ``extra_body`` (``{"chat_template_kwargs": {"enable_thinking": False}}``),
or the first token is ``<think>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from providers.openai_compat.logprob_scorers import LogprobScorer

__all__ = ("JUDGE_PROMPT", "JUDGE_SYSTEM", "JUDGE_USER", "JudgeScorer")

JUDGE_SYSTEM = (
    "You check solutions to problems one step at a time. Reply with exactly one word: Yes or No."
)
JUDGE_USER = (
    "Problem:\n{problem}\n\nSolution so far:\n{previous}\n\nLast step:\n{last}\n\n"
    "Is the last step correct? Answer Yes or No."
)
JUDGE_PROMPT = (
    "Problem:\n{problem}\n\nSolution so far:\n{solution}\n\n"
    "Question: Is the last step of the solution so far correct? Answer Yes or No.\nAnswer:"
)


class JudgeScorer(LogprobScorer):
    """An LLM judge: P(Yes)/(P(Yes)+P(No)) for "is the last step correct?".

    Args:
        model: The judge model.
        base_url: See :class:`LogprobScorer`.
        api: ``"chat"`` (system + user turn) or ``"completions"`` (a prompt ending in
            ``"Answer:"``).
        system_prompt: The chat system turn.
        user_template: The chat user turn; fields ``{problem}``, ``{previous}`` (the steps before
            the last, or "(none)"), ``{last}`` and ``{solution}``.
        prompt_template: The completions prompt; same fields.
        positive: Spellings of the positive label (variants of case and spacing are summed).
        negative: Spellings of the negative label.
        **kwargs: See :class:`LogprobScorer`.
    """

    def __init__(
        self,
        model: str,
        base_url: str | Sequence[str] = "http://localhost:8001/v1",
        *,
        api: Literal["chat", "completions"] = "chat",
        system_prompt: str | None = JUDGE_SYSTEM,
        user_template: str = JUDGE_USER,
        prompt_template: str = JUDGE_PROMPT,
        positive: Sequence[str] = ("Yes",),
        negative: Sequence[str] = ("No",),
        **kwargs: Any,
    ) -> None:
        super().__init__(model, base_url, **kwargs)
        self.api = api
        self.system_prompt = system_prompt
        self.user_template = user_template
        self.prompt_template = prompt_template
        self.positive = tuple(positive)
        self.negative = tuple(negative)

    @staticmethod
    def _fields(problem: str, steps: Sequence[str]) -> dict[str, str]:
        return {
            "problem": problem,
            "previous": "".join(steps[:-1]).strip() or "(none)",
            "last": steps[-1].strip() if steps else "",
            "solution": "".join(steps).strip(),
        }

    def prompt(self, problem: str, steps: Sequence[str]) -> str:
        """The completions prompt, ending in ``"Answer:"``."""
        return self.prompt_template.format(**self._fields(problem, steps))

    def messages(self, problem: str, steps: Sequence[str]) -> list[dict[str, str]]:
        """System instructions, then the problem, the steps and the question."""
        user = self.user_template.format(**self._fields(problem, steps))
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*system, {"role": "user", "content": user}]
