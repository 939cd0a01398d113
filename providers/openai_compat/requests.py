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

__all__ = ("Choice", "RequestBuilder", "mentions_n", "names_n")

_N_PARAM = re.compile(
    r"(?<![\w\\-])['\"`]?n['\"`]?(?![\w-])|n_cmpl|one completion choice|"
    r"multiple (?:choices|completions)|num_return_sequences",
    re.IGNORECASE,
)


def names_n(exc: openai.BadRequestError) -> bool:
    """Whether a 400 complains about the ``n`` parameter (so ``n`` is unsupported)."""
    return exc.param == "n" or mentions_n(f"{exc.message} {exc.body}")


def mentions_n(text: str) -> bool:
    """Whether an error text names the parameter ``n`` (or llama.cpp's and HF's names for it)."""
    return _N_PARAM.search(text) is not None


@dataclass(frozen=True)
class Choice:
    """One choice of an answer: text, ``finish_reason`` and the server's extra fields."""

    text: str
    finish_reason: str | None
    extra: Mapping[str, object] = field(default_factory=dict)


def _extra(model: Any) -> dict[str, object]:
    return dict(getattr(model, "model_extra", None) or {})


def _usage(usage: Any) -> tuple[int, int]:
    if usage is None:
        return 0, 0
    return int(getattr(usage, "prompt_tokens", 0) or 0), int(
        getattr(usage, "completion_tokens", 0) or 0
    )


@dataclass(frozen=True)
class RequestBuilder:
    """Sends one generation request in one mode and returns ``(choices, prompt, completion)``."""

    model: str
    mode: str
    backend: str
    system_prompt: str | None
    next_step_instruction: str
    extra_body: dict[str, Any]

    def _extensions(self, request: StepRequest) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.backend == "vllm":
            body["include_stop_str_in_output"] = True
        elif self.backend == "sglang":
            body["no_stop_trim"] = True
        if self.mode == "chat_prefill" and request.steps:
            if self.backend == "vllm":
                body.update(continue_final_message=True, add_generation_prompt=False)
            elif self.backend == "sglang":
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
        """Send the request for ``n`` choices; raises the openai client's errors."""
        if self.mode == "ollama_raw":
            assert prompt is not None
            return await self._ollama(endpoint, request, prompt, seed)
        common: dict[str, Any] = {
            "model": self.model,
            "n": n,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": list(request.stop),
            "extra_body": self._extensions(request),
        }
        if seed is not None:
            common["seed"] = seed
        if n == 1:
            del common["n"]
        if self.mode == "completions":
            assert prompt is not None
            completion = await endpoint.client.completions.create(
                prompt=prompt, max_tokens=request.max_tokens, **common
            )
            choices = [
                Choice(c.text or "", c.finish_reason, _extra(c))
                for c in sorted(completion.choices, key=lambda c: c.index)
            ]
            return (choices, *_usage(completion.usage))
        limit = "max_completion_tokens" if self.backend == "openai" else "max_tokens"
        common[limit] = request.max_tokens
        chat = await endpoint.client.chat.completions.create(
            messages=self.messages(request),  # type: ignore[arg-type]
            **common,
        )
        choices = [
            Choice(c.message.content or "", c.finish_reason, _extra(c))
            for c in sorted(chat.choices, key=lambda c: c.index)
        ]
        return (choices, *_usage(chat.usage))

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
        data = await endpoint.client.post(
            f"{endpoint.root_url}/api/generate", cast_to=object, body=body
        )
        if not isinstance(data, dict) or not isinstance(data.get("response"), str):
            raise ProviderError(
                f"{endpoint.root_url}/api/generate: unexpected answer {str(data)[:200]!r}"
            )
        reason = data.get("done_reason")
        choice = Choice(data["response"], reason if isinstance(reason, str) else "stop")
        return [choice], int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0)
