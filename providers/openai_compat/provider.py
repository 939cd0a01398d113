"""The provider for OpenAI-compatible servers: vLLM, SGLang, llama-server, Ollama, OpenAI.

One class, four ways to continue a partial solution (``mode``):

- ``completions``: raw prefix continuation on ``/v1/completions``; the prompt is a template's
  prefix plus ``"".join(steps)``. The exact continuation distribution; the default.
- ``chat_prefill``: ``/v1/chat/completions`` with the partial solution as the last assistant
  message, continued in place (vLLM and SGLang get ``continue_final_message``; llama-server
  continues a trailing assistant message by itself).
- ``chat_next_step``: for APIs that cannot continue an assistant message (OpenAI, most hosted
  APIs): the steps so far are a finished assistant turn and a user turn asks for the next step.
  **An approximation**: the model writes a new reply, not the continuation of its own text.
- ``ollama_raw``: Ollama's native ``/api/generate`` with ``raw: true``, its only true
  continuation path (its ``/v1/completions`` wraps the prompt in the chat template). Ollama has
  no ``n``, so children are n concurrent requests.

``backend`` switches on server extensions: ``"vllm"`` (``include_stop_str_in_output``,
``continue_final_message``), ``"sglang"`` (``no_stop_trim``, ``continue_final_message``),
``"openai"`` (``max_completion_tokens``); ``"generic"``, ``"llama_server"`` and ``"ollama"``
send plain OpenAI requests.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import openai

from providers.openai_compat.concurrency import gather
from providers.openai_compat.endpoints import Endpoint, EndpointPool, UsesEndpoints
from providers.openai_compat.requests import Choice, RequestBuilder, names_n
from providers.openai_compat.retry import RetryPolicy
from providers.openai_compat.steps import DEFAULT_FINAL_PATTERN, StopInfo, split_tokens, to_step
from providers.openai_compat.templates import FormatTemplate, PromptTemplate
from rebase_agent.exceptions import ProviderError
from rebase_agent.protocols import StepCompletion, StepRequest

__all__ = ("Backend", "Mode", "OpenAIProvider")

Mode = Literal["completions", "chat_prefill", "chat_next_step", "ollama_raw"]
Backend = Literal["generic", "vllm", "sglang", "llama_server", "ollama", "openai"]
logger = logging.getLogger("providers.openai_compat")
_PATHS: dict[str, str] = {
    "completions": "/completions",
    "chat_prefill": "/chat/completions",
    "chat_next_step": "/chat/completions",
    "ollama_raw": "/api/generate",
}


class OpenAIProvider(UsesEndpoints):
    """A :class:`~rebase_agent.Provider` over one or more OpenAI-compatible endpoints.

    Args:
        model: The model name the server expects.
        base_url: The base URL (``http://localhost:8000/v1``), or several replicas of the
            same model, used least-loaded first.
        mode: How a partial solution is continued (see the module docs).
        backend: Which server extensions to send (see the module docs).
        template: Prompt template for ``completions`` and ``ollama_raw``
            (default ``FormatTemplate("{problem}\\n\\n")``).
        system_prompt: System message for the chat modes.
        next_step_instruction: The user turn that asks for one more step (``chat_next_step``).
        api_key: API key; ``None`` reads ``OPENAI_API_KEY`` or sends a placeholder.
        max_concurrency: Requests in flight at once, per endpoint.
        timeout_s: Deadline of one request attempt.
        retry: Retry policy for 429, 5xx, timeouts and connection errors.
        supports_n: Whether the servers honour ``n``: ``None`` detects it once per endpoint
            (a 400 naming ``n``, or fewer choices than asked) and falls back to ``n``
            concurrent requests.
        final_pattern: Regex that marks a finished solution when the server cannot tell a
            delimiter stop from end of output; ``None`` treats such stops as steps.
        extra_body: More top-level request fields (e.g. ``{"top_k": 20}`` or
            ``{"chat_template_kwargs": {"enable_thinking": False}}``).
        endpoints: A ready :class:`EndpointPool`, instead of ``base_url`` and the options above.

    Example:
        >>> provider = OpenAIProvider("Qwen/Qwen2.5-Math-1.5B", "http://localhost:8000/v1",
        ...                           backend="vllm")
    """

    def __init__(
        self,
        model: str,
        base_url: str | Sequence[str] = "http://localhost:8000/v1",
        *,
        mode: Mode = "completions",
        backend: Backend = "generic",
        template: PromptTemplate | None = None,
        system_prompt: str | None = None,
        next_step_instruction: str = "Continue with the next step only.",
        api_key: str | None = None,
        max_concurrency: int = 16,
        timeout_s: float = 300.0,
        retry: RetryPolicy | None = None,
        supports_n: bool | None = None,
        final_pattern: str | None = DEFAULT_FINAL_PATTERN,
        extra_body: Mapping[str, Any] | None = None,
        endpoints: EndpointPool | None = None,
    ) -> None:
        if mode not in _PATHS:
            raise ValueError(f"mode must be one of {sorted(_PATHS)}, got {mode!r}")
        if mode == "ollama_raw":
            supports_n = False
        self.model = model
        self.mode: Mode = mode
        self.backend: Backend = backend
        self.template = template or FormatTemplate()
        self.final_pattern = final_pattern
        self.endpoints = endpoints or EndpointPool(
            base_url,
            api_key=api_key,
            max_concurrency=max_concurrency,
            timeout_s=timeout_s,
            retry=retry,
            supports_n=supports_n,
        )
        if mode == "ollama_raw":
            for endpoint in self.endpoints.endpoints:
                endpoint.supports_n, endpoint.n_explicit = False, True
        self._builder = RequestBuilder(
            model=model,
            mode=mode,
            backend=backend,
            system_prompt=system_prompt,
            next_step_instruction=next_step_instruction,
            extra_body=dict(extra_body or {}),
        )
        self._prefixes: OrderedDict[str, str] = OrderedDict()

    def __repr__(self) -> str:
        return f"OpenAIProvider({self.model!r}, mode={self.mode!r}, {self.endpoints!r})"

    @property
    def keeps_delimiter(self) -> bool:
        """Whether the server is asked to keep stop strings in the text."""
        return self.backend in ("vllm", "sglang") and self.mode != "ollama_raw"

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        """Sample ``request.n`` next steps of the partial solution.

        One request with ``n`` where the endpoint honours it; otherwise (or for the choices a
        server left out) single requests, concurrently, with seeds ``seed + i``.

        Raises:
            ProviderHTTPError: An error status that retries did not cure (the message names the
                endpoint and the model, never the key).
            ProviderTimeout: A request ran past ``timeout_s`` on every attempt.
            ProviderError: A malformed answer.
        """
        prompt = await self._prompt(request)
        path = _PATHS[self.mode]
        at_root = self.mode == "ollama_raw"

        async def first(endpoint: Endpoint) -> list[StepCompletion]:
            return await self._first(endpoint, request, prompt)

        completions = await self.endpoints.call(first, path=path, model=self.model, at_root=at_root)
        done = len(completions)
        if done >= request.n:
            return completions[: request.n]

        def single(index: int) -> Any:
            async def op(endpoint: Endpoint) -> list[StepCompletion]:
                seed = None if request.seed is None else request.seed + index
                got = await self._send(endpoint, request, prompt, n=1, seed=seed)
                if not got:
                    raise ProviderError(f"{endpoint.base_url}{path}: answer had no choices")
                return got[:1]

            return lambda: self.endpoints.call(op, path=path, model=self.model, at_root=at_root)

        rest = await gather([single(i) for i in range(done, request.n)])
        return completions + [c for got in rest for c in got]

    async def _first(
        self, endpoint: Endpoint, request: StepRequest, prompt: str | None
    ) -> list[StepCompletion]:
        """The first request: with ``n`` unless this endpoint is known not to honour it."""
        n = request.n if endpoint.supports_n is not False else 1
        try:
            got = await self._send(endpoint, request, prompt, n=n, seed=request.seed)
        except openai.BadRequestError as exc:
            if n == 1 or not names_n(exc):
                raise
            endpoint.mark_without_n("a 400 named the parameter n")
            got = await self._send(endpoint, request, prompt, n=1, seed=request.seed)
        else:
            if n > 1 and len(got) < n:
                endpoint.mark_without_n(f"asked for n={n}, got {len(got)} choices")
            elif n > 1:
                endpoint.supports_n = True
        if not got:
            raise ProviderError(f"{endpoint.base_url}: answer had no choices")
        return got

    async def _prompt(self, request: StepRequest) -> str | None:
        """The raw prompt (template prefix + partial solution), for the raw modes."""
        if self.mode not in ("completions", "ollama_raw"):
            return None
        prefix = self._prefixes.get(request.problem)
        if prefix is None:
            prefix = await self.template.render_prefix(request.problem, self.endpoints, self.model)
            self._prefixes[request.problem] = prefix
            if len(self._prefixes) > 1024:
                self._prefixes.popitem(last=False)
        return prefix + "".join(request.steps)

    async def _send(
        self,
        endpoint: Endpoint,
        request: StepRequest,
        prompt: str | None,
        *,
        n: int,
        seed: int | None,
    ) -> list[StepCompletion]:
        """Send one request and turn its choices into steps, splitting its usage over them."""
        choices, prompt_tokens, completion_tokens = await self._builder.send(
            endpoint, request, prompt, n=n, seed=seed
        )
        return self._completions(choices, request, prompt_tokens, completion_tokens)

    def _completions(
        self,
        choices: list[Choice],
        request: StepRequest,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> list[StepCompletion]:
        steps = [
            to_step(
                c.text,
                StopInfo.read(c.finish_reason, c.extra),
                request.stop,
                keeps_delimiter=self.keeps_delimiter,
                final_pattern=self.final_pattern,
            )
            for c in choices
        ]
        prompt_parts = split_tokens(prompt_tokens, [1] * len(steps))
        completion_parts = split_tokens(completion_tokens, [len(c.text) for c in choices])
        return [
            StepCompletion(text=text, finish_reason=reason, prompt_tokens=p, completion_tokens=k)
            for (text, reason), p, k in zip(steps, prompt_parts, completion_parts, strict=True)
        ]
