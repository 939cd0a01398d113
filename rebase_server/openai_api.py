"""The OpenAI API shapes the server reads and writes, and what it does with every field.

Every request field is implemented or refused with a 400 that names it, never ignored:

* implemented: ``model``, ``messages`` / ``prompt`` / ``input`` (the last user turn is the
  problem, earlier turns its context), ``stream``, ``stream_options.include_usage``, ``n`` (the
  best ``n`` answer classes, one choice each), ``max_tokens`` / ``max_completion_tokens`` /
  ``max_output_tokens`` (a cap on one solution), ``stop`` (each returned solution is cut before
  its first stop string), ``temperature``, ``top_p`` and ``seed`` (the policy's sampling);
* accepted, with no effect on the answer by their own definition: ``user``, ``metadata``,
  ``safety_identifier``, ``prompt_cache_key``, ``service_tier`` (``auto`` / ``default``),
  ``store: false``;
* refused unless neutral: tool calling (``tools``, ``functions``, ``tool_choice``,
  ``function_call``, ``parallel_tool_calls``; a route with ``forward_tools`` forwards such turns
  instead), ``response_format`` other than text, ``logprobs`` and ``top_logprobs``, penalties and
  ``logit_bias``, audio and other modalities, ``reasoning_effort``, and any field OpenAI does not
  define ("Unrecognized request argument supplied").

Per-request search overrides travel in the extra body field ``rebase``:
``{"rebase": {"budget": 32, "balance_temperature": 0.1}}``, which the openai client sends with
``extra_body=...``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.responses import JSONResponse

from rebase_agent import SearchResult
from rebase_server.routes import RequestSettings

__all__ = (
    "ApiError",
    "ChatCompletionRequest",
    "CompletionRequest",
    "ResponsesRequest",
    "SearchOverrides",
    "error_body",
    "summary",
    "usage",
)

Kind = Literal["chat", "text", "responses"]


class ApiError(Exception):
    """An error answered in OpenAI's JSON shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type=type, param=param, code=code)
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def refuse(param: str, message: str, code: str = "unsupported_parameter") -> ApiError:
    """A 400 that names the field this server does not implement."""
    return ApiError(400, f"{param}: {message}", param=param, code=code)


class SearchOverrides(BaseModel):
    """Per-request changes to a route's search, capped by the route."""

    model_config = ConfigDict(extra="forbid")

    budget: int | None = Field(None, ge=1)
    balance_temperature: float | None = Field(None, gt=0.0)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False
    """Send a last chunk with the usage (and no choices), as OpenAI does."""


def _parts_text(content: str | list[dict[str, Any]] | None, kinds: Sequence[str]) -> str:
    """The text of a message's content, failing on a part that is not text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type")
        if kind not in kinds:
            raise ValueError(
                f"content[{index}]: only text parts are supported (type {'/'.join(kinds)}), "
                f"got {kind!r}"
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise ValueError(f"content[{index}].text must be a string")
        extra = set(part) - {"type", "text"}
        if extra:
            raise ValueError(f"content[{index}]: unsupported part field {sorted(extra)[0]!r}")
        texts.append(text)
    return "".join(texts)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    function_call: dict[str, Any] | None = None
    refusal: str | None = None

    @model_validator(mode="after")
    def _text_parts_only(self) -> ChatMessage:
        _parts_text(self.content, ("text", "refusal") if self.role == "assistant" else ("text",))
        return self

    def text(self) -> str:
        """The message's text, joining text parts of a multi-part message."""
        if isinstance(self.content, list):
            return "".join(str(part.get("text", "")) for part in self.content)
        return self.content or ""

    def uses_tools(self) -> bool:
        """Whether the message is part of a tool call (a call, or a tool's result)."""
        return bool(self.tool_calls or self.function_call) or self.role in {"tool", "function"}

    def render(self) -> str:
        """The message as one context paragraph, ``role: text``."""
        text = self.text()
        for call in self.tool_calls or []:
            function = call.get("function") or {}
            text += f" [called {function.get('name')}({function.get('arguments', '')})]"
        if self.function_call:
            name, args = self.function_call.get("name"), self.function_call.get("arguments", "")
            text += f" [called {name}({args})]"
        return f"{self.role}: {text.strip()}"


def conversation_problem(turns: Sequence[tuple[str, str]]) -> str:
    """The problem of a conversation of ``(role, text)`` turns: the last user turn, after the
    other turns as context (one ``role: text`` paragraph each, in order).

    Raises:
        ValueError: No user turn.
    """
    last = next((i for i in range(len(turns) - 1, -1, -1) if turns[i][0] == "user"), None)
    if last is None:
        raise ValueError("the conversation has no user message")
    context = [f"{role}: {text.strip()}" for role, text in turns]
    problem = turns[last][1]
    del context[last]
    if not context:
        return problem
    return "\n\n".join(context) + "\n\nuser: " + problem


_NEUTRAL_METADATA = ("user", "metadata", "safety_identifier", "prompt_cache_key")


class _Request(BaseModel):
    """Fields every endpoint shares. Unknown fields are kept (``extra="allow"``) so that the
    refusal can name them."""

    model_config = ConfigDict(extra="allow")

    model: str
    stream: bool = False
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    rebase: SearchOverrides = Field(default_factory=SearchOverrides)
    # Accepted; no effect on the answer by their own definition.
    user: str | None = None
    metadata: dict[str, str] | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    store: bool | None = None

    #: Fields of OpenAI's API that this endpoint refuses unless they have a neutral value.
    refused: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        """Refuse what this server does not implement, naming the field.

        Raises:
            ApiError: 400 on the first such field.
        """
        for name in self.model_extra or {}:
            if name in self.refused:
                raise refuse(name, "not supported by rebase-agent")
            raise ApiError(
                400,
                f"Unrecognized request argument supplied: {name}",
                param=name,
                code="unknown_parameter",
            )
        if self.service_tier not in (None, "auto", "default"):
            raise refuse("service_tier", "only 'auto' and 'default' are served")
        if self.store:
            raise refuse("store", "rebase-agent stores nothing; send false or leave it out")

    def _settings(self, max_tokens: int | None, seed: int | None, max_name: str) -> RequestSettings:
        return RequestSettings(
            budget=self.rebase.budget,
            balance_temperature=self.rebase.balance_temperature,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=seed,
            max_solution_tokens=max_tokens,
            names={
                "budget": "rebase.budget",
                "balance_temperature": "rebase.balance_temperature",
                "max_solution_tokens": max_name,
                "max_step_tokens": max_name,
                "max_depth": max_name,
            },
        )


def _neutral(value: Any, *neutral: Any) -> bool:
    return value is None or value in neutral


_TOOL_FIELDS = ("tools", "functions", "tool_choice", "function_call", "parallel_tool_calls")


class _SamplingRequest(_Request):
    """Chat and text completions: ``n``, ``stop``, ``seed``, ``stream_options``."""

    n: int = Field(1, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty")
        return value

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def check(self) -> None:
        super().check()
        if self.stream_options is not None and not self.stream:
            raise refuse("stream_options", "only allowed when stream is true", "invalid_value")
        for name in ("presence_penalty", "frequency_penalty"):
            if not _neutral(getattr(self, name), 0):
                raise refuse(name, "penalties are not supported by the search's providers")
        if self.logit_bias:
            raise refuse("logit_bias", "not supported by the search's providers")


class ChatCompletionRequest(_SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[dict[str, Any]] | None = None
    functions: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    function_call: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    modalities: list[str] | None = None

    refused: ClassVar[tuple[str, ...]] = (
        "audio",
        "prediction",
        "reasoning_effort",
        "verbosity",
        "web_search_options",
    )

    def tool_fields(self) -> list[str]:
        """The fields that make this a tool-calling turn (empty: a plain chat turn)."""
        found = [
            name
            for name in _TOOL_FIELDS
            if not _neutral(getattr(self, name), [], "none")
            and not (name == "parallel_tool_calls" and not self.tools)
        ]
        if any(message.uses_tools() for message in self.messages) and not found:
            found.append("messages")
        return found

    def check(self) -> None:
        super().check()
        for name in self.tool_fields():
            if name == "messages":
                continue  # earlier tool calls and results are context text
            raise refuse(
                name,
                "tool calling is not supported by a REBASE search; give the route "
                "forward_tools to forward tool-calling turns to its policy endpoint",
            )
        if self.parallel_tool_calls is not None:
            raise refuse("parallel_tool_calls", "only allowed when tools are given")
        kind = (self.response_format or {}).get("type", "text")
        if kind != "text":
            raise refuse(
                "response_format",
                f"{kind!r} is not supported: a REBASE search answers in text only",
            )
        if set(self.response_format or {}) - {"type"}:
            raise refuse("response_format", "only {'type': 'text'} is supported")
        if self.logprobs:
            raise refuse("logprobs", "a search's answer has no single sequence of logprobs")
        if self.top_logprobs is not None:
            raise refuse("top_logprobs", "a search's answer has no single sequence of logprobs")
        if not _neutral(self.modalities, ["text"]):
            raise refuse("modalities", "only ['text'] is supported")
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise refuse(
                "max_tokens", "send max_tokens or max_completion_tokens, not both", "invalid_value"
            )

    def problem(self) -> str:
        """The last user message, after the rest of the conversation as context."""
        turns = [(m.role, m.render().partition(": ")[2]) for m in self.messages]
        try:
            return conversation_problem(turns)
        except ValueError as exc:
            raise refuse("messages", str(exc), "invalid_value") from None

    def settings(self) -> RequestSettings:
        cap = self.max_completion_tokens or self.max_tokens
        name = "max_completion_tokens" if self.max_completion_tokens else "max_tokens"
        return self._settings(cap, self.seed, name)


class CompletionRequest(_SamplingRequest):
    prompt: str | list[str]
    max_tokens: int | None = Field(None, ge=1)
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = None
    logprobs: int | None = None

    def check(self) -> None:
        super().check()
        if isinstance(self.prompt, list) and len(self.prompt) != 1:
            raise refuse("prompt", "send one prompt per request")
        if self.echo:
            raise refuse("echo", "not supported")
        if self.suffix:
            raise refuse("suffix", "not supported")
        if not _neutral(self.best_of, 1):
            raise refuse("best_of", "the search is the best-of; use rebase.budget")
        if self.logprobs is not None:
            raise refuse("logprobs", "a search's answer has no single sequence of logprobs")

    def problem(self) -> str:
        """The prompt."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def settings(self) -> RequestSettings:
        return self._settings(self.max_tokens, self.seed, "max_tokens")


class ResponsesRequest(_Request):
    """``POST /v1/responses``, text in and text out."""

    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    include: list[str] | None = None
    truncation: str | None = None
    reasoning: dict[str, Any] | None = None
    previous_response_id: str | None = None
    background: bool | None = None
    top_logprobs: int | None = None
    max_tool_calls: int | None = None

    refused: ClassVar[tuple[str, ...]] = ("conversation", "prompt")
    stream_options: dict[str, Any] | None = None

    def _stream_options(self) -> None:
        if self.stream_options and set(self.stream_options) - {"include_obfuscation"}:
            raise refuse("stream_options", "only include_obfuscation (false) is supported")
        if self.stream_options and self.stream_options.get("include_obfuscation"):
            raise refuse("stream_options.include_obfuscation", "not supported")

    def check(self) -> None:
        super().check()
        self._stream_options()
        if self.tools:
            raise refuse(
                "tools",
                "tool calling is not supported by a REBASE search (a route's forward_tools "
                "serves tool turns on /v1/chat/completions)",
            )
        if not _neutral(self.tool_choice, "none"):
            raise refuse("tool_choice", "only allowed when tools are given")
        if self.parallel_tool_calls is not None:
            raise refuse("parallel_tool_calls", "only allowed when tools are given")
        fmt = (self.text or {}).get("format") or {"type": "text"}
        if set(self.text or {}) - {"format"} or fmt.get("type") != "text":
            raise refuse("text", "only text.format {'type': 'text'} is supported")
        if self.include:
            raise refuse("include", "nothing extra to include")
        if not _neutral(self.truncation, "disabled"):
            raise refuse("truncation", "only 'disabled' is supported")
        for name in ("reasoning", "previous_response_id", "top_logprobs", "max_tool_calls"):
            if getattr(self, name) is not None:
                raise refuse(name, "not supported by rebase-agent")
        if self.background:
            raise refuse("background", "not supported by rebase-agent")
        self.turns()

    def turns(self) -> list[tuple[str, str]]:
        turns: list[tuple[str, str]] = []
        if self.instructions:
            turns.append(("system", self.instructions))
        if isinstance(self.input, str):
            return [*turns, ("user", self.input)]
        for index, item in enumerate(self.input):
            kind = item.get("type", "message")
            if kind != "message":
                raise refuse(f"input[{index}]", f"items of type {kind!r} are not supported")
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise refuse(f"input[{index}].role", f"unsupported role {role!r}")
            extra = set(item) - {"type", "role", "content", "id", "status"}
            if extra:
                raise refuse(f"input[{index}]", f"unsupported field {sorted(extra)[0]!r}")
            content = item.get("content")
            if not isinstance(content, str | list):
                raise refuse(f"input[{index}].content", "must be a string or a list of parts")
            try:
                text = _parts_text(content, ("input_text", "output_text", "text"))
            except ValueError as exc:
                raise refuse(f"input[{index}]", str(exc)) from None
            turns.append((role, text))
        return turns

    def problem(self) -> str:
        try:
            return conversation_problem(self.turns())
        except ValueError as exc:
            raise refuse("input", str(exc), "invalid_value") from None

    def settings(self) -> RequestSettings:
        return self._settings(self.max_output_tokens, None, "max_output_tokens")


# --- replies ----------------------------------------------------------------------------------


def error_body(
    message: str, *, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error JSON: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def usage(result: SearchResult) -> dict[str, int]:
    """Every token the search spent: policy and scorer, prompt and completion."""
    u = result.usage
    prompt = u.prompt_tokens + u.scorer_prompt_tokens
    completion = u.completion_tokens + u.scorer_completion_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def summary(result: SearchResult) -> dict[str, Any]:
    """The search's summary, sent in the extra ``rebase`` field of every reply."""
    return {
        "strategy": result.strategy,
        "budget": result.config.budget,
        "balance_temperature": result.config.balance_temperature,
        "answer": result.answer,
        "candidates": len(result.candidates),
        "unfinished": result.unfinished,
        "stopped": result.stopped,
        "tree_shape": result.tree_shape(),
        "votes": [v.model_dump(exclude={"node_ids"}) for v in result.votes],
        "usage": result.usage.model_dump(exclude={"depths"}),
    }


def solutions(result: SearchResult, n: int, stops: Sequence[str] = ()) -> list[tuple[str, str]]:
    """``(text, finish_reason)`` of the best ``n`` answer classes: the chosen solution first,
    then the best-scored solution of each next class; each text is cut before its first stop
    string. Fewer than ``n`` when fewer classes were found; one empty ``length`` choice when
    no solution was finished."""
    if result.solution is None:
        return [("", "length")]
    by_id = {c.node_id: c for c in result.candidates}
    texts = [result.solution]
    for vote in result.votes:
        if len(texts) >= n:
            break
        if result.chosen in vote.node_ids:
            continue
        members = [by_id[i] for i in vote.node_ids if i in by_id]
        if members:
            texts.append(max(members, key=lambda c: c.score).text)
    out = []
    for text in texts:
        cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
        out.append((text[: min(cuts)] if cuts else text, "stop"))
    return out


def chat_choices(texts: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish,
        }
        for i, (text, finish) in enumerate(texts)
    ]


def text_choices(texts: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"index": i, "text": text, "finish_reason": finish, "logprobs": None}
        for i, (text, finish) in enumerate(texts)
    ]


def responses_body(result: SearchResult, body: ResponsesRequest, model: str) -> dict[str, Any]:
    """A Responses API ``response`` object with one output message."""
    text, finish = solutions(result, 1)[0]
    u = usage(result)
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": now(),
        "status": "completed" if finish == "stop" else "incomplete",
        "incomplete_details": None if finish == "stop" else {"reason": "max_output_tokens"},
        "error": None,
        "model": model,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "metadata": body.metadata or {},
        "output": [
            {
                "type": "message",
                "id": f"msg_{uuid.uuid4().hex}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "parallel_tool_calls": False,
        "temperature": result.config.temperature,
        "top_p": result.config.top_p,
        "tool_choice": "none",
        "tools": [],
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "store": False,
        "usage": {
            "input_tokens": u["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": u["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": u["total_tokens"],
        },
        "rebase": summary(result),
    }


def completion_id(kind: Kind) -> str:
    """A fresh response id in OpenAI's style."""
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


def now() -> int:
    """Seconds since the epoch, for ``created``."""
    return int(time.time())
