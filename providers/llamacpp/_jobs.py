"""The units of work the engine runs, and the per-sequence sampling and stop-string state.

These are plain mutable objects shared between the event loop (which creates them, may set
``cancelled`` and reads the results once ``done``) and the worker thread driving the decode loop
(which fills them in).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from providers.llamacpp._lib import llama_cpp

__all__ = ("EvalJob", "GenJob", "GenOutput", "Job", "StopScanner", "decode_text", "new_sampler")

Finish = Literal["step", "eos", "length"]


@dataclass(frozen=True)
class GenOutput:
    """One finished sequence: its text (stop string kept), why it ended, its sampled tokens."""

    text: str
    finish_reason: Finish
    tokens: tuple[int, ...]


@dataclass(eq=False)
class _JobBase:
    cancelled: bool = field(default=False, init=False)
    """Set from the event loop when the caller went away; the engine drops the job's work."""
    error: BaseException | None = field(default=None, init=False)
    done: bool = field(default=False, init=False)
    prompt_evaluated: int = field(default=0, init=False)
    """Prompt tokens actually evaluated for this job (a reused cached prefix counts 0)."""
    prepare: Callable[[Any], None] | None = field(default=None, kw_only=True)
    """Called with the job in the worker thread before it joins the decode loop (e.g. to
    tokenize), so that callers queue their jobs without waiting for a thread first."""
    waiter: Any = field(default=None, init=False, repr=False)
    """The submitting caller's wake-up, set by :class:`~providers.llamacpp._gather.Batcher`."""
    owner: object = field(default=None, kw_only=True)
    """Whose work this is (e.g. the problem of a search), for fair admission: when the context
    is full, owners take turns (``None``: the job is its own owner)."""


@dataclass(eq=False)
class GenJob(_JobBase):
    """Sample ``n`` continuations of ``prompt``, one sampler chain per continuation."""

    prompt: list[int]
    n: int
    max_tokens: int
    stop: tuple[bytes, ...]
    temperature: float
    top_p: float
    seed: int | None
    top_k: int = 0
    """Keep only the ``top_k`` most likely tokens before sampling (0: the whole vocabulary)."""
    outputs: list[GenOutput | None] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.outputs = [None] * self.n


@dataclass(eq=False)
class EvalJob(_JobBase):
    """Evaluate ``tokens`` and read the logits of ``labels`` at the positions ``read_at``."""

    tokens: list[int]
    read_at: list[int]
    labels: list[int]
    rows: list[list[float]] = field(default_factory=list, init=False)


Job = GenJob | EvalJob


def new_sampler(
    temperature: float, top_p: float, seed: int | None, index: int, top_k: int = 0
) -> Any:
    """Build llama.cpp's sampler chain for one sequence: greedy at temperature 0, else
    top-k (if set), top-p, temperature and a seeded draw (child ``index`` uses ``seed + index``).
    """
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if temperature == 0.0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    if top_k > 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(top_k))
    if top_p < 1.0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(top_p, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(temperature))
    draw_seed = llama_cpp.LLAMA_DEFAULT_SEED
    if seed is not None:
        draw_seed = (seed + index) & 0xFFFFFFFF
        if draw_seed == llama_cpp.LLAMA_DEFAULT_SEED:  # that value means "random"
            draw_seed = 0
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(draw_seed))
    return chain


class StopScanner:
    """Finds the earliest stop string in a growing byte string, across token boundaries."""

    def __init__(self, stops: tuple[bytes, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self.stops), default=0)
        self.data = bytearray()

    def feed(self, piece: bytes) -> int | None:
        """Append ``piece``; return the end offset of the first stop string found, if any."""
        start = max(0, len(self.data) - self._longest + 1)
        self.data += piece
        best: tuple[int, int] | None = None
        for stop in self.stops:
            at = self.data.find(stop, start)
            if at >= 0 and (best is None or (at, -len(stop)) < (best[0], -best[1])):
                best = (at, len(stop))
        return None if best is None else best[0] + best[1]


def decode_text(data: bytes) -> str:
    """Decode UTF-8, dropping an incomplete character cut off at the end."""
    for cut in range(4):
        try:
            return data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", errors="replace")
