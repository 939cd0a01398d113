"""A small OpenAI-compatible HTTP server for tests, on a free localhost port.

It runs on :func:`~tests.providers.openai_compat.fake_http.serve` (HTTP/1.1 with ``h11``, inside the
test's task group) and behaves like vLLM, SGLang, llama-server or Ollama as configured
(:class:`Flavor`): with or without ``n``, with ``stop_reason`` / ``matched_stop`` /
``stop_type`` or none, trimming the delimiter unless asked to keep it, with logprobs,
``/pooling``, ``/apply-template`` and Ollama's ``/api/generate``. Faults are scripted per request
(:meth:`FakeApp.fail_next`): an error status with headers (429 + ``Retry-After``, 500, 401),
latency, or a garbled body. Every request is recorded, and so is every request whose client
went away before the answer (cancellation).

Usage::

    app = FakeApp(Flavor(stop_style="vllm"))
    async with serve(app) as base_url:   # "http://127.0.0.1:PORT/v1"
        ...
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from tests.providers.openai_compat.fake_http import serve

__all__ = ("FakeApp", "Fault", "Flavor", "Reply", "Sample", "serve")

StopStyle = Literal["vllm", "sglang", "llama_server", "none"]


@dataclass
class Sample:
    """What the fake model writes: text up to the stop, and why it stops there."""

    text: str
    end: Literal["stop", "eos", "length"] = "stop"


@dataclass
class Flavor:
    """How the fake server behaves."""

    supports_n: bool = True
    max_n: int | None = None
    """The most choices one request may ask for (llama-server: its slots); more is a 400 in
    llama-server's words."""
    n_error: bool = False
    """Without n: answer 400 naming ``n`` (True) or silently return one choice (False)."""
    stop_style: StopStyle = "vllm"
    latency_s: float = 0.0
    eos_token_id: int = 2
    usage: Literal["every_choice", "one_choice"] = "every_choice"
    """``one_choice``: ``usage.completion_tokens`` counts only the last choice of a request with
    ``n > 1``, as llama-server does."""
    server: Literal["llama_server", "vllm", "none"] = "none"
    """What identifies the server: llama-server's ``/props``, ``/tokenize`` (words) and
    ``timings`` (``cache_n``: the words shared with the previous prompt); vLLM's ``owned_by``
    in ``/v1/models``; or nothing."""
    completions: bool = True
    """Serve raw ``/v1/completions`` (False: 404, as a chat-only API)."""
    max_prompt_words: int | None = None
    """A longer prompt (one of a list, too) gets vLLM's 400 for a prompt past the context."""
    decoding_slots: int | None = None
    """Choices decoded at once (llama-server's ``-np``): a request for ``n`` waits, unseen by
    the client, until ``n`` are free, then takes ``latency_s``; ``None``: no such limit."""


@dataclass
class Reply:
    """An HTTP answer."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    raw: bool = False
    """Send ``body`` (a string) as it is, not as JSON."""


@dataclass
class Fault:
    """A scripted answer for the next matching request, instead of the normal one."""

    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    path: str | None = None
    raw: bool = False
    """Send ``body`` (a string) as it is: a garbled answer. A 200 fault that is not raw only
    adds ``delay_s`` to the normal answer."""


@dataclass
class Seen:
    """A received request."""

    path: str
    headers: dict[str, str]
    body: Any


def _words(text: str) -> int:
    return max(1, len(text.split()))


class FakeApp:
    """The server's behaviour, shared state and records."""

    def __init__(self, flavor: Flavor | None = None) -> None:
        self.flavor = flavor or Flavor()
        self.script: Callable[[str, int], Sample] = lambda prompt, i: Sample(f"Step {i}.")
        """The sample for choice ``i`` of a request with this prompt (or last message)."""
        self.faults: list[Fault] = []
        self.requests: list[Seen] = []
        self.disconnected: list[str] = []
        """Paths of requests whose client hung up before the answer."""
        self.completed: list[str] = []
        self._hangups = anyio.Event()
        self.label_logprobs: dict[str, float] = {"Yes": math.log(0.6), "No": math.log(0.3)}
        """Top logprobs of the first generated token (judge and generative PRM requests)."""
        self.logprobs_for: Callable[[str], dict[str, float]] = lambda prompt: self.label_logprobs
        """The same, per prompt; by default :attr:`label_logprobs` for every prompt."""
        self.pool_score: Callable[[str], float] = lambda step: 0.1 if "bad" in step else 0.9
        """P(good) of a step, for ``/pooling``."""
        self.pooling_tag = "<extra_0>"
        self.pool_positive_first = False
        """Rows ``[P(good), P(bad)]`` (Math-Shepherd's ``+``/``-``) instead of ``[bad, good]``."""
        self._free_slots = self.flavor.decoding_slots
        self._slot_freed = anyio.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_choices = 0
        self.max_in_flight_choices = 0
        """Choices (``n`` of each request, 1 without) of the requests in flight at once."""
        self.usage_sent: dict[str, int] = {"prompt_tokens": 0, "completion_tokens": 0}
        """Token usage of every successful answer, summed."""
        self.generated_tokens = 0
        """Completion tokens (words) of every choice actually generated, whatever usage says."""
        self.continuation: Callable[[str, int], tuple[str, bool]] | None = None
        """A deterministic model instead of :attr:`script`: the whole text choice ``i`` would
        write after this prompt (or the last message) and whether it then ends (EOS); the
        server cuts it at the first stop string and at ``max_tokens`` words, as a real one."""
        self._last_prompt = ""

    def hung_up(self, path: str) -> None:
        """Record a request whose client went away before the answer."""
        self.disconnected.append(path)
        self._hangups.set()
        self._hangups = anyio.Event()

    async def wait_hangups(self, count: int) -> None:
        """Wait until ``count`` requests in all were abandoned by their clients."""
        while len(self.disconnected) < count:
            await self._hangups.wait()

    def fail_next(self, *faults: Fault) -> None:
        """Answer the next requests with these faults, in order."""
        self.faults.extend(faults)

    def paths(self, path: str) -> list[Seen]:
        """Requests received on ``path``."""
        return [r for r in self.requests if r.path == path]

    async def handle(self, path: str, headers: dict[str, str], body: Any) -> Reply:
        self.requests.append(Seen(path, headers, body))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        n = body.get("n", 1) if isinstance(body, dict) else 1
        choices = n if isinstance(n, int) and n > 0 else 1
        self.in_flight_choices += choices
        self.max_in_flight_choices = max(self.max_in_flight_choices, self.in_flight_choices)
        try:
            for fault in self.faults:
                if fault.path is None or fault.path == path:
                    self.faults.remove(fault)
                    await anyio.sleep(fault.delay_s)
                    if fault.status == 200 and not fault.raw:
                        break  # only latency
                    body = fault.body or {"error": {"message": "fault"}}
                    return Reply(fault.status, body, fault.headers, raw=fault.raw)
            if self._free_slots is not None and path.endswith("completions"):
                await self._decode_in_slots(min(choices, self.flavor.decoding_slots or 1))
            else:
                await anyio.sleep(self.flavor.latency_s)
            reply = self._route(path, body)
            if isinstance(reply.body, dict) and reply.status == 200:
                sent = reply.body.get("usage") or {}
                for key in self.usage_sent:
                    self.usage_sent[key] += int(sent.get(key, 0))
                self.usage_sent["prompt_tokens"] += int(reply.body.get("prompt_eval_count", 0))
                self.usage_sent["completion_tokens"] += int(reply.body.get("eval_count", 0))
            self.completed.append(path)
            return reply
        finally:
            self.in_flight -= 1
            self.in_flight_choices -= choices

    async def _decode_in_slots(self, count: int) -> None:
        assert self._free_slots is not None
        while self._free_slots < count:
            await self._slot_freed.wait()
        self._free_slots -= count
        try:
            await anyio.sleep(self.flavor.latency_s)
        finally:
            self._free_slots += count
            self._slot_freed.set()
            self._slot_freed = anyio.Event()

    def _route(self, path: str, body: Any) -> Reply:
        server = self.flavor.server
        if path == "/v1/models" and server == "vllm":
            return Reply(200, {"object": "list", "data": [{"id": "m", "owned_by": "vllm"}]})
        if path == "/props" and server == "llama_server":
            return Reply(200, {"default_generation_settings": {}, "total_slots": 4})
        if path == "/tokenize" and server == "llama_server":
            return Reply(200, {"tokens": list(range(_words(body["content"])))})
        if path == "/v1/completions" and not self.flavor.completions:
            return Reply(404, {"error": {"message": "no route /v1/completions"}})
        if path == "/v1/completions":
            return self._generate(body, chat=False)
        if path == "/v1/chat/completions":
            return self._generate(body, chat=True)
        if path == "/pooling":
            return self._pooling(body)
        if path == "/apply-template":
            text = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in body["messages"])
            return Reply(200, {"prompt": text + "<assistant>"})
        if path == "/api/generate":
            return self._ollama(body)
        return Reply(404, {"error": {"message": f"no route {path}"}})

    def _sample_text(
        self, sample: Sample, stops: list[str], keep: bool
    ) -> tuple[str, dict[str, Any]]:
        """The text the server returns and the extra fields of the choice."""
        style = self.flavor.stop_style
        text = sample.text
        extra: dict[str, Any] = {}
        if sample.end == "stop":
            stop = stops[0] if stops else ""
            text = text + stop if keep else text
            extra = {
                "vllm": {"stop_reason": stop},
                "sglang": {"matched_stop": stop},
                "llama_server": {"stop_type": "word", "stopping_word": stop},
                "none": {},
            }[style]
        elif sample.end == "eos":
            eos_fields: dict[str, dict[str, Any]] = {
                "vllm": {"stop_reason": None},
                "sglang": {"matched_stop": self.flavor.eos_token_id},
                "llama_server": {"stop_type": "eos", "stopping_word": ""},
                "none": {},
            }
            extra = eos_fields[style]
        elif style == "llama_server":
            extra = {"stop_type": "limit", "stopping_word": ""}
        elif style in ("vllm", "sglang"):
            extra = {"stop_reason" if style == "vllm" else "matched_stop": None}
        return text, extra

    def _generate(self, body: dict[str, Any], *, chat: bool) -> Reply:
        n = int(body.get("n", 1))
        cap = self.flavor.max_n
        if cap is not None and n > cap:
            message = f"Field 'n': Value must be between 1 <= value <= {cap}, but got {n}"
            return Reply(400, {"error": {"code": 400, "message": message}})
        if n > 1 and not self.flavor.supports_n:
            if self.flavor.n_error:
                return Reply(
                    400,
                    {
                        "error": {
                            "message": "Only one completion choice is allowed",
                            "type": "invalid_request_error",
                            "param": "n",
                        }
                    },
                )
            n = 1
        if chat:
            prompts = ["\n".join(str(m["content"]) for m in body["messages"])]
        else:
            raw = body["prompt"]
            prompts = [str(p) for p in raw] if isinstance(raw, list) else [str(raw)]
        longest = max(_words(p) for p in prompts)
        if self.flavor.max_prompt_words is not None and longest > self.flavor.max_prompt_words:
            message = (
                f"This model's maximum context length is {self.flavor.max_prompt_words} tokens. "
                f"However, your request has {longest} input tokens."
            )
            error = {"message": message, "type": "BadRequestError", "code": 400}
            return Reply(400, {"object": "error", **error})
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        keep = bool(body.get("include_stop_str_in_output") or body.get("no_stop_trim"))
        choices = []
        completion_tokens = 0
        copies: dict[str, int] = {}  # the copies of a prompt in a list sample as its n choices
        for prompt in prompts:
            labels = self.logprobs_for(prompt)
            want_logprobs = body.get("logprobs") and labels  # {}: a server without logprobs
            first = copies.get(prompt, 0)
            copies[prompt] = first + n
            for i in range(first, first + n):
                sample = self._sample(prompt, i, stops, int(body.get("max_tokens") or 16))
                text, extra = self._sample_text(sample, stops, keep)
                self.generated_tokens += _words(text)
                if self.flavor.usage == "every_choice" or i == first + n - 1:
                    completion_tokens += _words(text)
                finish = "length" if sample.end == "length" else "stop"
                choice: dict[str, Any] = {"index": len(choices), "finish_reason": finish, **extra}
                if chat:
                    choice["message"] = {"role": "assistant", "content": text}
                    if want_logprobs:
                        top: list[dict[str, Any]] = [
                            {"token": t, "logprob": lp, "bytes": None} for t, lp in labels.items()
                        ]
                        first = max(top, key=lambda t: float(t["logprob"]))
                        choice["logprobs"] = {"content": [{**first, "top_logprobs": top}]}
                else:
                    choice["text"] = text
                    if want_logprobs and self.flavor.server == "llama_server":
                        # llama-server answers /completions logprobs in the chat layout
                        listed = [{"token": t, "logprob": lp} for t, lp in labels.items()]
                        best = max(listed, key=lambda t: float(t["logprob"]))
                        choice["logprobs"] = {"content": [{**best, "top_logprobs": listed}]}
                    elif want_logprobs:
                        first_token = max(labels, key=labels.__getitem__)
                        choice["logprobs"] = {
                            "tokens": [first_token],
                            "token_logprobs": [labels[first_token]],
                            "top_logprobs": [dict(labels)],
                            "text_offset": [0],
                        }
                choices.append(choice)
        prompt = "\n".join(prompts)
        kind = "chat.completion" if chat else "text_completion"
        usage = {"prompt_tokens": _words(prompt), "completion_tokens": completion_tokens}
        usage["total_tokens"] = usage["prompt_tokens"] + completion_tokens
        answer: dict[str, Any] = {
            "id": "fake",
            "object": kind,
            "created": 0,
            "model": body["model"],
            "choices": choices,
            "usage": usage,
        }
        if self.flavor.server == "llama_server":
            shared = 0
            for a, b in zip(prompt.split(), self._last_prompt.split(), strict=False):
                if a != b:
                    break
                shared += 1
            answer["timings"] = {"cache_n": shared, "prompt_n": _words(prompt) - shared}
        self._last_prompt = prompt
        return Reply(200, answer)

    def _sample(self, prompt: str, i: int, stops: list[str], max_tokens: int) -> Sample:
        """Choice ``i``: from :attr:`continuation` (cut at a stop and at ``max_tokens`` words)
        when set, else from :attr:`script`."""
        if self.continuation is None:
            return self.script(prompt, i)
        text, eos = self.continuation(prompt, i)
        end: Literal["stop", "eos", "length"] = "eos" if eos else "length"
        found = [(text.find(s), s) for s in stops if s and s in text]
        if found:
            text, end = text[: min(found)[0]], "stop"
        words = list(re.finditer(r"\S+", text))
        if len(words) > max_tokens:
            text, end = text[: words[max_tokens - 1].end()], "length"
        return Sample(text, end)

    def _pooling(self, body: dict[str, Any]) -> Reply:
        inputs = body["input"]
        inputs = [inputs] if isinstance(inputs, str) else inputs
        data = []
        for index, text in enumerate(inputs):
            pieces = text.split(self.pooling_tag)[:-1]
            rows = [[1 - self.pool_score(p), self.pool_score(p)] for p in pieces]
            if self.pool_positive_first:
                rows = [row[::-1] for row in rows]
            data.append({"index": index, "object": "pooling", "data": rows})
        tokens = sum(_words(t) for t in inputs)
        return Reply(
            200,
            {
                "id": "pool",
                "object": "list",
                "model": body["model"],
                "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _ollama(self, body: dict[str, Any]) -> Reply:
        if not body.get("raw") or body.get("stream") is not False:
            return Reply(400, {"error": "expected raw=true, stream=false"})
        sample = self.script(body["prompt"], 0)
        options = body.get("options", {})
        text, _ = self._sample_text(sample, list(options.get("stop") or []), keep=False)
        return Reply(
            200,
            {
                "model": body["model"],
                "response": text,
                "done": True,
                "done_reason": "length" if sample.end == "length" else "stop",
                "prompt_eval_count": _words(body["prompt"]),
                "eval_count": _words(text),
            },
        )
