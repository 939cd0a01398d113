"""The OpenAI API shapes the server reads and writes.

Requests are validated leniently (unknown OpenAI fields are accepted and ignored, as clients send
many), except for the fields REBASE uses. Per-request search overrides travel in the extra body
field ``rebase``: ``{"rebase": {"budget": 32, "balance_temperature": 0.1}}``, which the openai
client sends with ``extra_body=...``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rebase_agent import SearchResult

__all__ = (
    "ChatCompletionRequest",
    "CompletionRequest",
    "SearchOverrides",
    "error_body",
    "summary",
    "usage",
)


class SearchOverrides(BaseModel):
    """Per-request changes to a route's search, capped by the route."""

    model_config = ConfigDict(extra="forbid")

    budget: int | None = Field(None, ge=1)
    balance_temperature: float | None = Field(None, gt=0.0)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text, joining text parts of a multi-part message."""
        if isinstance(self.content, str):
            return self.content
        if self.content is None:
            return ""
        return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    rebase: SearchOverrides = Field(default_factory=SearchOverrides)

    def problem(self) -> str:
        """The last user message."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text()
        raise ValueError("messages has no user message")


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    prompt: str
    stream: bool = False
    rebase: SearchOverrides = Field(default_factory=SearchOverrides)

    def problem(self) -> str:
        """The prompt."""
        return self.prompt


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


def completion_id(kind: Literal["chat", "text"]) -> str:
    """A fresh response id in OpenAI's style."""
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


def now() -> int:
    """Seconds since the epoch, for ``created``."""
    return int(time.time())
