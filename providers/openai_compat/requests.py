"""Build the request each mode sends, and read the choices and usage back.

Kept apart from :mod:`.provider` so the provider holds only policy (``n`` detection, fan-out,
usage splitting) and this module only the shapes of the four APIs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import openai

from providers.openai_compat.templates import chat_messages
from rebase_agent.exceptions import ProviderError
from rebase_agent.protocols import StepRequest

if TYPE_CHECKING:
    from providers.openai_compat.endpoints import Endpoint

__all__ = ("Choice", "RequestBuilder", "mentions_n", "n_cap", "names_n", "read_usage")

_N_PARAM = re.compile(
    r"(?<![\w\\-])['\"`]?n['\"`]?(?![\w-])|n_cmpl|one completion choice|"
    r"multiple (?:choices|completions)|num_return_sequences",
    re.IGNORECASE,
)


def names_n(exc: openai.BadRequestError) -> bool:
    """Whether a 400 complains about the ``n`` parameter (so ``n`` is unsupported)."""
    return exc.param == "n" or mentions_n(f"{exc.message} {exc.body}")


_N_CAP = re.compile(r"(?:<=|at most|no more than|between 1 and)\s*(\d+)", re.IGNORECASE)


def n_cap(exc: openai.BadRequestError) -> int | None:
    """The most choices a 400 about ``n`` allows, where it says (llama-server: ``"Field 'n':
    Value must be between 1 <= value <= 4"``, its slots); ``None`` where it says none."""
    found = _N_CAP.search(exc.message)
    return int(found.group(1)) if found else None


def mentions_n(text: str) -> bool:
    """Whether an error text names the parameter ``n`` (or llama.cpp's and HF's names for it)."""
    return _N_PARAM.search(text) is not None


@dataclass(frozen=True)
class Choice:
    """One choice of an answer: text, ``finish_reason`` and the server's extra fields."""

    text: str
    finish_reason: str | None
    extra: Mapping[str, object] = field(default_factory=dict)


_COMPLETION_FIELDS = frozenset({"index", "text", "finish_reason", "logprobs"})
_CHAT_FIELDS = frozenset({"index", "message", "finish_reason", "logprobs"})


def read_usage(usage: object) -> tuple[int, int]:
    """``(prompt_tokens, completion_tokens)`` of an answer's decoded ``usage`` (0 where
    missing)."""
    if not isinstance(usage, dict):
        return 0, 0
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def _read_choices(data: object, url: str, *, chat: bool) -> tuple[list[Choice], int, int]:
    """The choices (in index order) and usage of a decoded completions or chat answer."""
    raw = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        raise ProviderError(f"{url}: unexpected answer {str(data)[:200]!r}")
    known = _CHAT_FIELDS if chat else _COMPLETION_FIELDS
    choices = []
    for c in sorted(raw, key=lambda c: int(c.get("index") or 0)):
        if chat:
            message = c.get("message")
            text = message.get("content") if isinstance(message, dict) else None
        else:
            text = c.get("text")
        reason = c.get("finish_reason")
        extra = {k: v for k, v in c.items() if k not in known}
        text = text if isinstance(text, str) else ""
        choices.append(Choice(text, reason if isinstance(reason, str) else None, extra))
    assert isinstance(data, dict)
    return (choices, *read_usage(data.get("usage")))


@dataclass(frozen=True)
class RequestBuilder:
    """Sends one generation request in one mode and returns ``(choices, prompt, completion)``."""

    model: str
    mode: str
    server: str
    system_prompt: str | None
    next_step_instruction: str
    extra_body: dict[str, Any]

    def _extensions(self, request: StepRequest) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.server == "vllm":
            body["include_stop_str_in_output"] = True
        elif self.server == "sglang":
            body["no_stop_trim"] = True
        if self.mode == "chat_prefill" and request.steps:
            if self.server == "vllm":
                body.update(continue_final_message=True, add_generation_prompt=False)
            elif self.server == "sglang":
                body["continue_final_message"] = True
        return {**body, **self.extra_body}

    def messages(self, request: StepRequest) -> list[dict[str, str]]:
        """The conversation for the chat modes."""
        messages = chat_messages(request.problem, self.system_prompt)
        partial = "".join(request.steps)
        if request.steps:
            messages.append({"role": "assistant", "content": partial})
            if self.mode == "chat_next_step":
                messages.append({"role": "user", "content": self.next_step_instruction})
        return messages

    async def send(
        self,
        endpoint: Endpoint,
        request: StepRequest,
        prompt: str | None,
        *,
        n: int,
        seed: int | None,
    ) -> tuple[list[Choice], int, int]:
        """Send the request for ``n`` choices; raises the openai client's errors.

        The body is built and read as plain JSON (:meth:`Endpoint.post`): the same fields the
        ``openai`` client would send (``extra_body`` fields top-level), without its models.
        """
        if self.mode == "ollama_raw":
            assert prompt is not None
            return await self._ollama(endpoint, request, prompt, seed)
        body: dict[str, Any] = {"model": self.model}
        if self.mode == "completions":
            assert prompt is not None
            body["prompt"] = prompt
            body["max_tokens"] = request.max_tokens
            path = "/completions"
        else:
            body["messages"] = self.messages(request)
            limit = "max_completion_tokens" if self.server == "openai" else "max_tokens"
            body[limit] = request.max_tokens
            path = "/chat/completions"
        if n != 1:
            body["n"] = n
        body["temperature"] = request.temperature
        body["top_p"] = request.top_p
        body["stop"] = list(request.stop)
        if seed is not None:
            body["seed"] = seed
        body.update(self._extensions(request))
        data = await endpoint.post(path, body)
        return _read_choices(data, endpoint.base_url + path, chat=path != "/completions")

    async def send_prompts(
        self, endpoint: Endpoint, request: StepRequest, prompts: list[str]
    ) -> tuple[list[Choice], int, int]:
        """One ``/completions`` request for one choice of each of ``prompts`` (vLLM's and
        SGLang's list of prompts; without ``n`` and without a seed, see :mod:`.batching`).

        Raises:
            ProviderError: The answer's choices do not match the prompts one for one.
        """
        body: dict[str, Any] = {"model": self.model, "prompt": prompts}
        body["max_tokens"] = request.max_tokens
        body["temperature"] = request.temperature
        body["top_p"] = request.top_p
        body["stop"] = list(request.stop)
        body.update(self._extensions(request))
        url = endpoint.base_url + "/completions"
        choices, prompt_tokens, completion_tokens = _read_choices(
            await endpoint.post("/completions", body), url, chat=False
        )
        if len(choices) != len(prompts):
            raise ProviderError(
                f"{url}: {len(choices)} choices for a list of {len(prompts)} prompts; a server "
                "that does not take a list of prompts needs batch_prompts=False"
            )
        return choices, prompt_tokens, completion_tokens

    async def _ollama(
        self, endpoint: Endpoint, request: StepRequest, prompt: str, seed: int | None
    ) -> tuple[list[Choice], int, int]:
        options: dict[str, Any] = {
            "num_predict": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": list(request.stop),
        }
        if seed is not None:
            options["seed"] = seed
        body = {
            "model": self.model,
            "prompt": prompt,
            "raw": True,
            "stream": False,
            "options": options,
            **self.extra_body,
        }
        data = await endpoint.post("/api/generate", body, at_root=True)
        if not isinstance(data, dict) or not isinstance(data.get("response"), str):
            raise ProviderError(
                f"{endpoint.root_url}/api/generate: unexpected answer {str(data)[:200]!r}"
            )
        reason = data.get("done_reason")
        choice = Choice(data["response"], reason if isinstance(reason, str) else "stop")
        return [choice], int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0)
