"""Turn a server's choice into a :class:`~rebase_agent.StepCompletion`.

Servers say differently why a completion stopped:

- vLLM: ``stop_reason`` is the stop string (a delimiter), a stop token id, or ``None`` for EOS.
- SGLang: ``matched_stop`` is the stop string, or the EOS token id (an int).
- llama-server: ``stop_type`` is ``word`` (a stop string), ``eos`` or ``limit``.
- OpenAI, Ollama and llama-cpp-python say ``finish_reason="stop"`` for both.

When the server says nothing, the text decides: a delimiter at its end (kept by the server) is a
step; otherwise a text matching ``final_pattern`` (default: ``\\boxed{`` or "the answer is") is
the end of the solution; otherwise it is a step whose delimiter the server trimmed.
A step always ends with its delimiter, re-appended when the server trimmed it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rebase_agent.allocation import split_proportionally
from rebase_agent.protocols import FinishReason

__all__ = ("DEFAULT_FINAL_PATTERN", "StopInfo", "split_tokens", "to_step")

DEFAULT_FINAL_PATTERN = r"\\boxed\{|[Tt]he (?:final )?answer is"
"""Text that marks a finished solution when the server cannot tell a delimiter from EOS."""


class StopInfo:
    """What a choice says about why it stopped: ``"step"``, ``"eos"``, ``"length"`` or unknown."""

    def __init__(self, kind: FinishReason | None, delimiter: str | None = None) -> None:
        self.kind = kind
        self.delimiter = delimiter

    @classmethod
    def read(cls, finish_reason: str | None, extra: Mapping[str, object]) -> StopInfo:
        """Read ``finish_reason`` and the server-specific fields of one choice.

        Args:
            finish_reason: The OpenAI ``finish_reason`` (``"stop"``, ``"length"``, ...).
            extra: The choice's other fields (``stop_reason``, ``matched_stop``, ``stop_type``,
                ``stopping_word``), as the server sent them.
        """
        if finish_reason == "length":
            return cls("length")
        if "stop_type" in extra:  # llama-server
            stop_type = extra["stop_type"]
            word = extra.get("stopping_word")
            if stop_type == "word":
                return cls("step", word if isinstance(word, str) and word else None)
            if stop_type == "limit":
                return cls("length")
            if stop_type == "eos":
                return cls("eos")
        for key in ("stop_reason", "matched_stop"):  # vLLM, SGLang
            if key in extra:
                value = extra[key]
                if isinstance(value, str) and value:
                    return cls("step", value)
                if finish_reason == "stop":
                    return cls("eos")  # None or a stop token id: the model ended its output
        if finish_reason not in (None, "stop"):
            return cls("eos")  # content_filter and the like: nothing more will come
        return cls(None)


def _first_delimiter(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """The earliest delimiter in ``text``: its end position and the delimiter."""
    found = [(text.find(s), s) for s in stops if s and s in text]
    if not found:
        return None
    start, stop = min(found, key=lambda p: (p[0], -len(p[1])))
    return start + len(stop), stop


def to_step(
    text: str,
    info: StopInfo,
    stops: Sequence[str],
    *,
    keeps_delimiter: bool,
    final_pattern: str | None,
) -> tuple[str, FinishReason]:
    """The step text (ending with its delimiter when it is a step) and why it ended.

    Args:
        text: The completion's text.
        info: What the server said about the stop.
        stops: The request's delimiters; the first is re-appended when it is unknown which one
            the server trimmed.
        keeps_delimiter: The server was asked to keep the stop string in the text (vLLM
            ``include_stop_str_in_output``, SGLang ``no_stop_trim``), so a text without one at
            its end did not stop at a delimiter.
        final_pattern: Regex for a finished solution, used only when the server says nothing.
    """
    cut = _first_delimiter(text, stops)
    if cut is not None and cut[0] < len(text):
        return text[: cut[0]], "step"  # the server ran past a delimiter: cut there
    if info.kind in ("eos", "length"):
        return text, info.kind
    if cut is not None:
        return text, "step"  # ends with a delimiter
    if info.kind == "step":
        delimiter = info.delimiter if info.delimiter in stops else None
        return text + (delimiter or stops[0]), "step"
    if keeps_delimiter:
        return text, "eos"
    if final_pattern is not None and re.search(final_pattern, text):
        return text, "eos"
    return text + stops[0], "step"


def split_tokens(total: int, weights: Sequence[int]) -> list[int]:
    """Split a request's token count over its choices, in proportion to ``weights``.

    The parts always add up to ``total`` (largest remainders get the leftover), so usage summed
    over completions equals what the server reported: nothing lost or counted twice.
    """
    if len(weights) < 2:
        return [max(0, total)] * len(weights)  # most requests: one choice
    return split_proportionally(max(0, total), [max(1, w) for w in weights])
