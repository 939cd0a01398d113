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

``server`` switches on server extensions: ``"vllm"`` (``include_stop_str_in_output``,
``continue_final_message``), ``"sglang"`` (``no_stop_trim``, ``continue_final_message``),
``"openai"`` (``max_completion_tokens``); ``"generic"``, ``"llama_server"`` and ``"ollama"``
send plain OpenAI requests.

On vLLM and SGLang in ``completions`` mode, the unseeded requests for one problem that arrive
together (a depth's expansions) go out as one request with a list of prompts
(``batch_prompts``, see :mod:`.batching`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import anyio
import openai

from providers.openai_compat.batching import BatchMember, PromptBatcher, split_into
from providers.openai_compat.concurrency import gather
from providers.openai_compat.endpoints import Endpoint, EndpointPool, Routing, UsesEndpoints
from providers.openai_compat.probe import ProbeReport, Tokenizer, cached_probe, count_tokens
from providers.openai_compat.requests import Choice, RequestBuilder, n_cap, names_n
from providers.openai_compat.retry import RetryPolicy
from providers.openai_compat.steps import DEFAULT_FINAL_PATTERN, StopInfo, split_tokens, to_step
from providers.openai_compat.templates import (
    PromptTemplate,
    ServerTemplate,
    coerce_template,
    prompt_prefix,
)
from rebase_agent.exceptions import ProviderError
from rebase_agent.presets import PRESETS, Preset
from rebase_agent.protocols import StepCompletion, StepRequest

__all__ = ("Mode", "OpenAIProvider", "Server")

Mode = Literal["completions", "chat_prefill", "chat_next_step", "ollama_raw"]
Server = Literal["generic", "vllm", "sglang", "llama_server", "ollama", "openai"]
_TOP_K_SERVERS = ("vllm", "sglang", "llama_server", "generic")
"""Servers that take ``top_k`` (OpenAI rejects unknown fields)."""
_BATCH_SERVERS = ("vllm", "sglang")
"""Servers whose ``/v1/completions`` is known to take a list of prompts (``batch_prompts``)."""
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
            same model (see ``routing``).
        mode: How a partial solution is continued (see the module docs).
        server: The server's flavour: which extensions to send (see the module docs).
        template: Prompt template for ``completions`` and ``ollama_raw``: a format string
            with ``{problem}``, a Jinja chat template (rendered with ``system_prompt``), a
            :class:`~rebase_agent.templates.PromptTemplate` or a :class:`ServerChatTemplate`
            (see :func:`~providers.openai_compat.templates.coerce_template`; default
            ``"{problem}\\n\\n"``). A bad one fails here, naming the template and the problem.
        system_prompt: System message for the chat modes.
        next_step_instruction: The user turn that asks for one more step (``chat_next_step``).
        api_key: API key; ``None`` reads ``OPENAI_API_KEY`` or sends a placeholder.
        max_concurrency: Requests in flight at once, per endpoint, fixed; ``None`` (the
            default) adapts to the server (see :class:`EndpointPool`).
        timeout_s: Deadline of one request attempt.
        retry: Retry policy for 429, 5xx, timeouts and connection errors.
        supports_n: Whether to send ``n`` to the servers: ``None`` detects it once per
            endpoint (a 400 naming ``n``, or fewer choices than asked) and falls back to ``n``
            concurrent requests. ``False`` sends one request per choice. On llama-server that is
            a trade: a request for ``n`` choices waits until ``n`` slots are free at once (it
            can starve beside a stream of smaller requests), while one request per choice
            evaluates each choice's prompt in its own slot (an eval over llama-server here
            finished fewer searches that way; see the README).
        final_pattern: Regex that marks a finished solution when the server cannot tell a
            delimiter stop from end of output; ``None`` treats such stops as steps.
        extra_body: More top-level request fields (e.g. ``{"top_k": 20}`` or
            ``{"chat_template_kwargs": {"enable_thinking": False}}``).
        endpoints: A ready :class:`EndpointPool`, instead of ``base_url`` and the options above.
        preset: A prompt preset (:mod:`rebase_agent.presets`): a base preset is the template
            of the raw modes, a chat preset the system prompt of the chat modes; its search
            fields become :attr:`search_defaults` and its ``top_k`` is sent where the server
            takes it.
        probe: Probe each endpoint once (cached per process, :func:`~.probe.cached_probe`)
            before its first request, and use what it found: whether ``n`` is honoured, whether
            ``usage`` counts every choice, whether stop strings come back; with
            ``mode="auto"``, ``server="auto"`` or no template and no preset, the mode, the
            server and the preset it recommends. :meth:`prepare` runs it ahead of time.
        routing: How requests are spread over several replicas: ``"cache_aware"`` keeps a
            problem's requests on one replica (its prefix cache holds the problem's tree)
            unless that replica runs ahead of the others; ``"least_loaded"`` ignores the
            problem (see :class:`EndpointPool`).
        batch_prompts: Send the unseeded requests for one problem that arrive together as one
            ``/completions`` request with a list of prompts (see :mod:`.batching`): fewer
            requests for the client and the server to handle, the same samples. ``None`` (the
            default): on for ``server="vllm"`` and ``"sglang"`` in ``completions`` mode.
            ``True`` needs ``completions`` mode and a server that takes a list of prompts.

    Usage: with ``n > 1`` a server whose ``usage.completion_tokens`` counts one choice
    (llama-server; the probe finds others) gets each choice counted on its own, with the
    server's tokenize endpoint, else estimated from the text's length; so a search's
    usage is what the server generated, not one choice's share of it.

    Example:
        >>> provider = OpenAIProvider("Qwen/Qwen2.5-Math-1.5B", "http://localhost:8000/v1",
        ...                           server="vllm")
    """

    def __init__(
        self,
        model: str,
        base_url: str | Sequence[str] = "http://localhost:8000/v1",
        *,
        mode: Mode | Literal["auto"] = "completions",
        server: Server | Literal["auto"] = "generic",
        template: str | PromptTemplate | ServerTemplate | None = None,
        system_prompt: str | None = None,
        next_step_instruction: str = "Continue with the next step only.",
        api_key: str | None = None,
        max_concurrency: int | None = None,
        timeout_s: float = 300.0,
        retry: RetryPolicy | None = None,
        supports_n: bool | None = None,
        final_pattern: str | None = DEFAULT_FINAL_PATTERN,
        extra_body: Mapping[str, Any] | None = None,
        endpoints: EndpointPool | None = None,
        preset: Preset | None = None,
        probe: bool = False,
        routing: Routing = "cache_aware",
        batch_prompts: bool | None = None,
    ) -> None:
        if mode != "auto" and mode not in _PATHS:
            raise ValueError(f"mode must be one of {sorted(_PATHS)} or 'auto', got {mode!r}")
        if batch_prompts and mode not in ("completions", "auto"):
            raise ValueError(
                f"batch_prompts=True needs mode='completions' (a list of raw prompts), got "
                f"mode={mode!r}"
            )
        self.batch_prompts = batch_prompts
        if not probe and "auto" in (mode, server):
            raise ValueError("mode='auto' and server='auto' need probe=True")
        if mode == "ollama_raw":
            supports_n = False
        self.model = model
        self.mode: Mode = "completions" if mode == "auto" else mode
        self.server: Server = "generic" if server == "auto" else server
        self._auto = {
            "mode": mode == "auto",
            "server": server == "auto",
            "preset": probe and template is None and preset is None,
        }
        self.probe = probe
        self.report: ProbeReport | None = None
        """What the probe found on the first endpoint (``None`` before :meth:`prepare`)."""
        self._prepared = not probe
        self._prepare_lock = anyio.Lock()
        self._keeps: bool | None = None
        self.template = coerce_template(template, system_prompt=system_prompt)
        self.final_pattern = final_pattern
        self.search_defaults: dict[str, Any] = {}
        """:class:`~rebase_agent.RebaseConfig` fields the preset recommends (read by
        :func:`rebase_agent.backends.search_defaults`)."""
        self._system_prompt = system_prompt
        self._next_step_instruction = next_step_instruction
        self._extra_body = dict(extra_body or {})
        self.preset: Preset | None = None
        self.endpoints = endpoints or EndpointPool(
            base_url,
            api_key=api_key,
            max_concurrency=max_concurrency,
            timeout_s=timeout_s,
            retry=retry,
            supports_n=supports_n,
            routing=routing,
        )
        if mode == "ollama_raw":
            for endpoint in self.endpoints.endpoints:
                endpoint.supports_n, endpoint.n_explicit = False, True
        self._prefixes: OrderedDict[str, str] = OrderedDict()
        self._builder = self._make_builder()
        self._batcher = PromptBatcher(self._send_batch, self._generate_one)
        if preset is not None:
            self.use_preset(preset, template_given=template is not None)

    def _make_builder(self) -> RequestBuilder:
        return RequestBuilder(
            model=self.model,
            mode=self.mode,
            server=self.server,
            system_prompt=self._system_prompt,
            next_step_instruction=self._next_step_instruction,
            extra_body=dict(self._extra_body),
        )

    def use_preset(self, preset: Preset, *, template_given: bool = False) -> None:
        """Prompt with ``preset`` from now on (see the ``preset`` argument).

        Raises:
            ValueError: A base preset with a chat mode, or a chat preset with a raw mode.
        """
        raw = self.mode in ("completions", "ollama_raw")
        if preset.kind == "base" and not raw:
            raise ValueError(
                f"template {preset.name!r} is a raw prompt for base models; mode {self.mode!r} "
                "needs a chat preset (e.g. chat_steps) or mode=completions"
            )
        if preset.kind == "chat" and raw:
            raise ValueError(
                f"template {preset.name!r} is a chat preset; mode {self.mode!r} continues a raw "
                "prompt: use a base preset (e.g. few_shot_steps) or a chat mode"
            )
        self.preset = preset
        if preset.prefix is not None and not template_given:
            self.template = coerce_template(preset.prefix)
            self._prefixes.clear()
        if preset.system_prompt is not None and self._system_prompt is None:
            self._system_prompt = preset.system_prompt
        if preset.top_k is not None and "top_k" not in self._extra_body:
            if self.server in _TOP_K_SERVERS:
                self._extra_body["top_k"] = preset.top_k
            else:
                logger.info(
                    "preset %s samples with top_k=%d, but server %r does not take top_k: not sent",
                    preset.name,
                    preset.top_k,
                    self.server,
                )
        self.search_defaults = dict(preset.search_defaults)
        self._builder = self._make_builder()

    async def prepare(self) -> None:
        """Probe the endpoints (once; with ``probe=True``) and apply what was found.

        Raises:
            ProviderError: The probe found that no search can run on a server (unreachable,
                unknown model, neither completions nor chat); the message says why.
        """
        if self._prepared:
            return
        async with self._prepare_lock:
            if self._prepared:
                return
            server = None if self._auto["server"] else self.server
            secret = self.endpoints._api_key
            reports = [
                await cached_probe(e.client, self.model, server=server, secret=secret)
                for e in self.endpoints.endpoints
            ]
            for endpoint, report in zip(self.endpoints.endpoints, reports, strict=True):
                if report.fatal is not None:
                    raise ProviderError(f"probe: {report.fatal}")
                if not endpoint.n_explicit and report.n != "unknown":
                    endpoint.supports_n = report.n == "yes"
                if report.usage in ("every_choice", "one_choice"):
                    endpoint.usage_one_choice = report.usage == "one_choice"
                endpoint.tokenizer = report.tokenizer
            report = reports[0]
            self.report = report
            if self._auto["server"]:
                self.server = cast(Server, report.server)
            if self._auto["mode"]:
                self.mode = cast(Mode, report.mode)
                if self.batch_prompts and self.mode != "completions":
                    raise ProviderError(
                        f"batch_prompts=True needs mode 'completions'; the probe chose "
                        f"{self.mode!r} for {self.endpoints.endpoints[0].base_url}"
                    )
                if self.mode == "ollama_raw":
                    for endpoint in self.endpoints.endpoints:
                        endpoint.supports_n, endpoint.n_explicit = False, True
            if report.stop in ("kept", "trimmed") and self.mode in ("completions",):
                self._keeps = report.stop == "kept"
            self._builder = self._make_builder()
            if self._auto["preset"]:
                self.use_preset(PRESETS[_preset_for(self.mode, report.preset)])
            self._prepared = True

    def __repr__(self) -> str:
        return f"OpenAIProvider({self.model!r}, mode={self.mode!r}, {self.endpoints!r})"

    @property
    def batching(self) -> bool:
        """Whether unseeded requests for one problem that arrive together are batched (see
        ``batch_prompts``; decided by the probe's server and mode where they are probed)."""
        if self.mode != "completions":
            return False
        if self.batch_prompts is not None:
            return self.batch_prompts
        return self.server in _BATCH_SERVERS

    @property
    def batches_sent(self) -> int:
        """Requests sent so far that carried the prompts of several requests."""
        return self._batcher.batches_sent

    @property
    def keeps_delimiter(self) -> bool:
        """Whether the server is asked to keep stop strings in the text."""
        if self._keeps is not None:
            return self._keeps
        return self.server in ("vllm", "sglang") and self.mode != "ollama_raw"

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        """Sample ``request.n`` next steps of the partial solution.

        One request with ``n`` where the endpoint honours it (split into requests of at most
        the endpoint's cap on ``n``, where its server has one); otherwise (or for the choices a
        server left out) single requests, concurrently, with seeds ``seed + i`` (``i``: the
        index of a request's first choice).

        Raises:
            ProviderHTTPError: An error status that retries did not cure (the message names the
                endpoint and the model, never the key).
            ProviderTimeout: A request ran past ``timeout_s`` on every attempt.
            ProviderError: A malformed answer.
        """
        await self.prepare()
        prompt = await self._prompt(request)
        if prompt is not None and self.batching:  # the batcher sends a seeded one alone
            return await self._batcher.generate(request, prompt)
        return await self._generate_one(request, prompt)

    async def _generate_one(self, request: StepRequest, prompt: str | None) -> list[StepCompletion]:
        """:meth:`generate` for one request on its own."""
        path = _PATHS[self.mode]
        at_root = self.mode == "ollama_raw"
        seen: list[Endpoint] = []

        async def first(endpoint: Endpoint) -> list[StepCompletion]:
            seen.append(endpoint)
            return await self._first(endpoint, request, prompt)

        def first_n(endpoint: Endpoint) -> int:
            return _first_choices(endpoint, request.n)

        key = request.problem
        completions = await self.endpoints.call(
            first, path=path, model=self.model, at_root=at_root, affinity=key, choices=first_n
        )

        def more(index: int, count: int) -> Any:
            def more_n(endpoint: Endpoint) -> int:
                return min(count, endpoint.max_n or count) if endpoint.supports_n else 1

            async def op(endpoint: Endpoint) -> list[StepCompletion]:
                seed = None if request.seed is None else request.seed + index
                got = await self._send(endpoint, request, prompt, n=more_n(endpoint), seed=seed)
                if not got:
                    raise ProviderError(f"{endpoint.base_url}{path}: answer had no choices")
                return got[:count]

            return lambda: self.endpoints.call(
                op, path=path, model=self.model, at_root=at_root, affinity=key, choices=more_n
            )

        while len(completions) < request.n:  # each round adds at least one choice, or raises
            endpoint = seen[-1]
            size = (endpoint.max_n or request.n) if endpoint.supports_n else 1
            done, missing = len(completions), request.n - len(completions)
            starts = range(done, request.n, size)
            rest = await gather([more(i, min(size, request.n - i)) for i in starts])
            completions += [c for got in rest for c in got][:missing]
        return completions[: request.n]

    async def _send_batch(self, members: Sequence[BatchMember]) -> list[list[StepCompletion]]:
        """One request for every member's choices (its prompt ``n`` times); each member's
        completions, the reported sums split over them (see :mod:`.batching`)."""
        request = members[0].request  # the members share everything but the prompt and n
        prompts = [m.prompt for m in members for _ in range(m.request.n)]

        async def op(endpoint: Endpoint) -> tuple[list[Choice], int, int]:
            return await self._builder.send_prompts(endpoint, request, prompts)

        choices, prompt_tokens, completion_tokens = await self.endpoints.call(
            op,
            path="/completions",
            model=self.model,
            affinity=request.problem,
            choices=lambda endpoint: len(prompts),
        )
        steps = self._completions(
            choices,
            request,
            prompt_tokens,
            completion_tokens,
            prompt_weights=[len(p) for p in prompts],
        )
        return split_into(steps, (member.request.n for member in members))

    async def _first(
        self, endpoint: Endpoint, request: StepRequest, prompt: str | None
    ) -> list[StepCompletion]:
        """The first request: with ``n`` (at most the endpoint's cap) unless this endpoint is
        known not to honour it."""
        n = _first_choices(endpoint, request.n)
        try:
            got = await self._send(endpoint, request, prompt, n=n, seed=request.seed)
        except openai.BadRequestError as exc:
            if n == 1 or not names_n(exc):
                raise
            cap = n_cap(exc)
            if cap is not None and 1 < cap < n:
                logger.info(
                    "%s: at most n=%d choices a request; splitting larger n", endpoint.base_url, cap
                )
                endpoint.max_n = cap
                return await self._first(endpoint, request, prompt)
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
            prefix = await prompt_prefix(self.template, request.problem, self.endpoints, self.model)
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
        counts = None
        if len(choices) > 1 and self._usage_counts_one_choice(endpoint):
            counts = await self._count_choices(endpoint, choices, request, completion_tokens)
        return self._completions(choices, request, prompt_tokens, completion_tokens, counts)

    def _usage_counts_one_choice(self, endpoint: Endpoint) -> bool:
        """Whether this endpoint's ``usage.completion_tokens`` covers only one choice: as the
        probe found, else as llama-server is known to do."""
        if endpoint.usage_one_choice is not None:
            return endpoint.usage_one_choice
        return self.server == "llama_server"

    async def _count_choices(
        self, endpoint: Endpoint, choices: list[Choice], request: StepRequest, reported: int
    ) -> list[int]:
        """Each choice's completion tokens: ``max_tokens`` for one cut at the limit, else the
        server's tokenizer, else an estimate from the reported count and the text lengths."""
        tokenizer: Tokenizer | None = endpoint.tokenizer
        if tokenizer is None and self.server == "llama_server" and not endpoint.tokenizer_failed:
            tokenizer = "tokenize_content"
        counts: list[int | None] = [
            request.max_tokens if c.finish_reason == "length" else None for c in choices
        ]
        todo = [i for i, k in enumerate(counts) if k is None]
        if tokenizer is not None and todo:

            def count(i: int) -> Any:
                async def op() -> int:
                    return await count_tokens(
                        endpoint.client, endpoint.root_url, self.model, tokenizer, choices[i].text
                    )

                return op

            try:
                got = await gather([count(i) for i in todo])
            except (openai.OpenAIError, ValueError) as exc:
                endpoint.tokenizer, endpoint.tokenizer_failed = None, True
                logger.warning(
                    "%s: tokenizing choices failed (%s); estimating their tokens instead",
                    endpoint.base_url,
                    type(exc).__name__,
                )
            else:
                for i, k in zip(todo, got, strict=True):
                    counts[i] = k
                    if choices[i].text and k == 0:
                        counts[i] = 1
        rest = [i for i, k in enumerate(counts) if k is None]
        if rest:
            # The reported count is one choice's: scale it by each text's length.
            lengths = [len(choices[i].text) for i in rest]
            mean = max(1.0, sum(lengths) / len(lengths))
            for i, length in zip(rest, lengths, strict=True):
                counts[i] = max(1 if length else 0, round(reported * length / mean))
        return [int(k or 0) for k in counts]

    def _completions(
        self,
        choices: list[Choice],
        request: StepRequest,
        prompt_tokens: int,
        completion_tokens: int,
        counts: list[int] | None = None,
        *,
        prompt_weights: list[int] | None = None,
    ) -> list[StepCompletion]:
        """Each choice as a step, with its share of the usage: ``counts`` (each choice's own
        completion tokens) or the reported count split by text length; the prompt tokens split
        by ``prompt_weights`` (default: evenly, one prompt for every choice)."""
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
        prompt_parts = split_tokens(prompt_tokens, prompt_weights or [1] * len(steps))
        completion_parts = (
            counts
            if counts is not None
            else split_tokens(completion_tokens, [len(c.text) for c in choices])
        )
        # Built without validation (a few microseconds per choice, 64 choices a request at the
        # root): every field is valid by construction (to_step's reasons, non-negative splits).
        build = StepCompletion.model_construct
        return [
            build(text=text, finish_reason=reason, prompt_tokens=p, completion_tokens=k)
            for (text, reason), p, k in zip(steps, prompt_parts, completion_parts, strict=True)
        ]


def _first_choices(endpoint: Endpoint, n: int) -> int:
    """Choices the first request for ``n`` asks ``endpoint`` for: ``n``, at most its cap, or 1
    where it is known not to honour ``n``."""
    n = n if endpoint.supports_n is not False else 1
    return min(n, endpoint.max_n or n)


def _preset_for(mode: str, recommended: str) -> str:
    """The preset for ``mode``: the probe's recommendation where its kind fits the mode (a raw
    prompt for ``completions`` and ``ollama_raw``, a chat prompt otherwise), else the mode's own
    (``few_shot_steps`` or ``chat_steps``), so a mode the user chose is never given a preset it
    cannot use."""
    raw = mode in ("completions", "ollama_raw")
    if PRESETS[recommended].kind == ("base" if raw else "chat"):
        return recommended
    return "few_shot_steps" if raw else "chat_steps"
