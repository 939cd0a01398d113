"""An LLM-as-judge PRM: P(Yes)/(P(Yes)+P(No)) for "is the last step correct?".

Any instruction model on any OpenAI-compatible server that returns ``top_logprobs`` can judge.
The prompt ends exactly where the label is predicted; one token is requested at temperature 0
and the score is read from the first token's top logprobs, summing spelling variants and
bounding a label missing from the top-k (:func:`rebase_agent.prm.label_probability`). For
thinking models, turn thinking off through ``extra_body``
(``{"chat_template_kwargs": {"enable_thinking": False}}``), or the first token is ``<think>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

from providers.openai_compat.logprob_scorers import LogprobScorer
from providers.openai_compat.probe import cached_probe
from rebase_agent.prm import (
    JUDGE_PROMPT,
    JUDGE_SYSTEM,
    JUDGE_USER,
    YES_NO_LABELS,
    JudgeTemplate,
)
from rebase_agent.templates import chat_messages

__all__ = ("JUDGE_PROMPT", "JUDGE_SYSTEM", "JUDGE_USER", "JudgeScorer")


class JudgeScorer(LogprobScorer):
    """An LLM judge: P(Yes)/(P(Yes)+P(No)) for "is the last step correct?".

    Args:
        model: The judge model.
        base_url: See :class:`LogprobScorer`.
        api: ``"chat"`` (system + user turn) or ``"completions"`` (a prompt ending in
            ``"Answer:"``).
        system_prompt: The chat system turn.
        user_template: The chat user turn, a format string over the judge fields of
            :func:`rebase_agent.prm.judge_fields` (``{problem}``, ``{previous}``, ``{step}``,
            ``{last}``, ``{so_far}``, ``{solution}``).
        prompt_template: The completions prompt (the same for llama.cpp's judge); same fields.
        positive: Spellings of the positive label (variants of case and spacing are summed).
        negative: Spellings of the negative label.
        **kwargs: See :class:`LogprobScorer`.

    Raises:
        ValueError: A template with an unknown placeholder or bad braces, named.
    """

    def __init__(
        self,
        model: str,
        base_url: str | Sequence[str] = "http://localhost:8001/v1",
        *,
        api: Literal["chat", "completions", "auto"] = "chat",
        system_prompt: str | None = JUDGE_SYSTEM,
        user_template: str = JUDGE_USER,
        prompt_template: str = JUDGE_PROMPT,
        positive: Sequence[str] = YES_NO_LABELS[0],
        negative: Sequence[str] = YES_NO_LABELS[1],
        **kwargs: Any,
    ) -> None:
        user = JudgeTemplate(user_template, name="user_template")
        completion = JudgeTemplate(prompt_template, name="prompt_template")
        super().__init__(model, base_url, **kwargs)
        self.api = "chat" if api == "auto" else api
        self._probe_api = api == "auto"
        self.system_prompt = system_prompt
        self.user_template, self.prompt_template = user, completion
        self.positive = tuple(positive)
        self.negative = tuple(negative)

    async def prepare(self) -> None:
        """With ``api="auto"``: probe the first endpoint (once per process, shared with the
        provider's probe of the same server) and read logprobs where it recommends: raw
        ``/completions`` for a base model whose server returns top logprobs there (llama-server,
        vLLM), chat otherwise; on vLLM and SGLang, and ``batch_size`` not given,
        :data:`~.logprob_scorers.AUTO_BATCH_SIZE` prompts a request. Other values of ``api``
        need no probe."""
        if not self._probe_api:
            return
        self._probe_api = False
        endpoint = self.endpoints.endpoints[0]
        report = await cached_probe(endpoint.client, self.model, secret=self.endpoints._api_key)
        _, api = report.scorer
        if report.fatal is None and api in ("chat", "completions"):
            self.api = cast(Literal["chat", "completions"], api)
            self.use_batch_size(report.server)

    def prompt(self, problem: str, steps: Sequence[str]) -> str:
        """The completions prompt, ending in ``"Answer:"``."""
        return self.prompt_template.render(problem, steps)

    def messages(self, problem: str, steps: Sequence[str]) -> list[dict[str, str]]:
        """System instructions, then the problem, the steps and the question."""
        return chat_messages(self.user_template.render(problem, steps), self.system_prompt)
