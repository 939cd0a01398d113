"""``--backend openai``: an OpenAI-compatible policy and scorer from string options.

Options (``--option KEY=VALUE`` on the command line, ``options`` in a server route):

- ``model`` (required), ``base_url`` (default ``http://localhost:8000/v1``; several replicas
  separated by commas), ``mode`` (``auto``, ``completions``, ``chat_prefill``,
  ``chat_next_step``, ``ollama_raw``), ``server`` (``auto``, ``generic``, ``vllm``, ``sglang``,
  ``llama_server``, ``ollama``, ``openai``);
- ``probe`` (``on``, the default, or ``off``): probe each server once before the first request
  (what ``rebase-agent probe`` prints) and use what it finds: ``n``, per-choice usage, stop
  strings, and for ``mode=auto`` / ``server=auto`` / no ``template`` the mode, the server and
  the prompt preset it recommends. ``auto`` is the default of ``mode`` and ``server`` with the
  probe on; with it off they default to ``completions`` and ``generic``;
- ``template``: a prompt preset (``few_shot_steps``, ``plain``, ``chat_steps``; see
  :mod:`rebase_agent.presets`) or the path of a text file with a ``{problem}`` field (a raw
  prompt for base models). A preset brings its search fields (e.g. short steps) as the
  backend's recommended ones, under the user's own;
- ``scorer``: ``judge`` (default: an LLM judge on ``scorer_model``), ``qwen_prm`` or
  ``math_shepherd_pooling`` (vLLM ``/pooling``), ``math_shepherd`` or ``rlhflow`` (logprobs), or
  ``none`` (every step 1.0: the ``--check`` alone scores); ``scorer_api`` (``chat`` or
  ``completions``: where the judge reads its logprobs; default: where the probe finds them,
  ``chat`` with the probe off), ``scorer_model``
  (default: ``model``), ``scorer_base_url`` (default: ``base_url``);
- ``calculator`` (``on``/``off``): the model writes the arithmetic of a step, a calculator
  its value after each ``=`` (:class:`rebase_agent.calculator.CalculatorProvider`, with
  ``method="correct"``: these servers trim stop strings without saying which one matched, so
  each finished step is read and rewritten from its first wrong value). Default: on with the
  ``few_shot_steps`` preset (named, or chosen by the probe), the embedded default's prompt,
  which the llama backend also runs with the calculator; off for any other prompt. It needs a
  mode that continues a step in place (``completions``, ``chat_prefill``, ``ollama_raw``);
  ``on`` with ``chat_next_step`` is refused;
- ``supports_n`` (``auto``, the default, ``on`` or ``off``): send a node's ``n`` children as
  one request (``on``), one request per child (``off``), or as the probe (or the first
  request) finds the server (``auto``). On llama-server ``off`` avoids its wait for ``n`` free
  slots at once, at the price of evaluating every child's prompt in its own slot;
- ``batch_prompts`` (``auto``, the default, ``on`` or ``off``): send the unseeded requests for
  one problem that arrive together (a depth's nodes) as one ``/completions`` request with a list
  of prompts (:mod:`providers.openai_compat.batching`): ``auto`` does where the server is vLLM or
  SGLang in ``completions`` mode; ``on`` insists (``completions`` mode only);
- ``api_key_env``: the environment variable that holds the API key (default
  ``OPENAI_API_KEY``). Keys are never taken as option values, which end up in shell history
  and process lists.
"""

from __future__ import annotations

import os
from typing import Any, cast, get_args

from providers.openai_compat.judge import JudgeScorer
from providers.openai_compat.logprob_scorers import MathShepherdScorer, RLHFlowScorer
from providers.openai_compat.pooling import MathShepherdPoolingScorer, QwenPRMScorer
from providers.openai_compat.provider import Mode, OpenAIProvider, Server
from rebase_agent.backends import parse_flag
from rebase_agent.calculator import CalculatorProvider
from rebase_agent.exceptions import ProviderError
from rebase_agent.presets import resolve_preset
from rebase_agent.protocols import Scorer, ScoreRequest

__all__ = ("ServerCalculator", "UniformScorer", "openai_backend")

CALCULATOR_PRESET = "few_shot_steps"
"""The preset with which the calculator is on by default (the embedded default's prompt)."""


class UniformScorer:
    """Scores every step 1.0: with ``--check arithmetic`` the check alone decides (for servers
    with neither logprobs nor a PRM)."""

    async def score(self, request: ScoreRequest) -> list[list[float]]:
        """One 1.0 per step of each solution."""
        return [[1.0] * len(steps) for steps in request.solutions]


class ServerCalculator(CalculatorProvider):
    """The calculator over an :class:`OpenAIProvider` (``method="correct"``), decided once the
    server is probed.

    Args:
        provider: The OpenAI provider.
        auto: Turn the calculator on in :meth:`prepare` only when the provider prompts with the
            :data:`CALCULATOR_PRESET` preset (the probe chooses it for a base model on raw
            completions); ``False``: on whatever the preset.

    The provider's other attributes (``mode``, ``preset``, ``report``, ``endpoints``, ...) read
    through, so the pair behaves as the provider with a calculator in it.
    """

    def __init__(self, provider: OpenAIProvider, *, auto: bool = False) -> None:
        super().__init__(provider, method="correct")
        self.openai_provider = provider
        self.auto = auto
        self.enabled = not auto
        self._decided = False

    async def prepare(self) -> None:
        """Probe the server (the provider's ``prepare``), then decide :attr:`enabled`.

        Raises:
            ProviderError: The probe found no search can run; or the calculator was asked for
                and the probe chose ``chat_next_step``, where a step cannot be continued.
        """
        await self.openai_provider.prepare()
        if self._decided:
            return
        if self.openai_provider.mode == "chat_next_step":
            if not self.auto:
                raise ProviderError(
                    "calculator=on continues a step in place, but the probe chose mode "
                    "chat_next_step (the server continues no assistant message): use "
                    "mode=completions or chat_prefill, or calculator=off"
                )
            self.enabled = False
        elif self.auto:
            preset = self.openai_provider.preset
            self.enabled = preset is not None and preset.name == CALCULATOR_PRESET
        self._decided = True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "openai_provider":
            raise AttributeError(name)
        return getattr(self.openai_provider, name)

    def __repr__(self) -> str:
        state = (
            "decided by the probe"
            if self.auto and not self._decided
            else ("on" if self.enabled else "off")
        )
        return f"ServerCalculator({self.openai_provider!r}, {state})"


_SCORERS: dict[str, type[Any]] = {
    "judge": JudgeScorer,
    "qwen_prm": QwenPRMScorer,
    "math_shepherd_pooling": MathShepherdPoolingScorer,
    "math_shepherd": MathShepherdScorer,
    "rlhflow": RLHFlowScorer,
    "none": UniformScorer,
}
_KNOWN = {
    "model",
    "base_url",
    "mode",
    "server",
    "scorer",
    "scorer_model",
    "scorer_base_url",
    "api_key_env",
    "probe",
    "template",
    "scorer_api",
    "calculator",
    "supports_n",
    "batch_prompts",
}


def openai_backend(**options: str) -> tuple[OpenAIProvider | ServerCalculator, Scorer]:
    """Build the provider and scorer that ``options`` describe (see the module docs).

    Raises:
        ValueError: A missing ``model``, an unknown option or an unknown value, named.
    """
    unknown = sorted(set(options) - _KNOWN)
    if unknown:
        raise ValueError(f"unknown openai backend options {unknown}; known: {sorted(_KNOWN)}")
    if "model" not in options:
        raise ValueError("the openai backend needs --option model=NAME")
    probe = options.get("probe", "on")
    if probe not in ("on", "off"):
        raise ValueError(f"probe must be 'on' or 'off', got {probe!r}")
    probing = probe == "on"
    mode = options.get("mode", "auto" if probing else "completions")
    server = options.get("server", "auto" if probing else "generic")
    if mode not in (*get_args(Mode), "auto"):
        raise ValueError(f"mode must be one of {(*get_args(Mode), 'auto')}, got {mode!r}")
    if server not in (*get_args(Server), "auto"):
        raise ValueError(f"server must be one of {(*get_args(Server), 'auto')}, got {server!r}")
    if not probing and "auto" in (mode, server):
        raise ValueError("mode=auto and server=auto need probe=on")
    scorer_kind = options.get("scorer", "judge")
    if scorer_kind not in _SCORERS:
        raise ValueError(f"scorer must be one of {sorted(_SCORERS)}, got {scorer_kind!r}")
    scorer_api = options.get("scorer_api")
    if scorer_api is not None and scorer_api not in ("chat", "completions"):
        raise ValueError(f"scorer_api must be 'chat' or 'completions', got {scorer_api!r}")
    if scorer_api is not None and scorer_kind != "judge":
        raise ValueError(f"scorer_api applies to scorer=judge only, not {scorer_kind!r}")
    preset = resolve_preset(options["template"]) if "template" in options else None
    calculator = (
        parse_flag("calculator", options["calculator"]) if "calculator" in options else None
    )
    if calculator and mode == "chat_next_step":
        raise ValueError(
            "calculator=on continues a step in place; mode chat_next_step ends each step as a "
            "turn: use mode=completions or chat_prefill, or calculator=off"
        )
    send_n = _auto_flag(options, "supports_n")
    batch_prompts = _auto_flag(options, "batch_prompts")
    key_env = options.get("api_key_env", "OPENAI_API_KEY")
    api_key = os.environ.get(key_env)
    urls = options.get("base_url", "http://localhost:8000/v1").split(",")
    if preset is not None and mode == "auto":
        mode = "completions" if preset.kind == "base" else "chat_prefill"
    provider = OpenAIProvider(
        options["model"],
        urls,
        mode=cast(Mode, mode),
        server=cast(Server, server),
        api_key=api_key,
        preset=preset,
        probe=probing,
        supports_n=send_n,
        batch_prompts=batch_prompts,
    )
    policy = _with_calculator(provider, calculator, probing=probing, mode=mode)
    if scorer_kind == "none":
        return policy, UniformScorer()
    scorer_urls = options.get("scorer_base_url", ",".join(urls)).split(",")
    extra: dict[str, Any] = {} if scorer_api is None else {"api": scorer_api}
    if scorer_api is None and scorer_kind == "judge" and probing:
        extra["api"] = "auto"  # where the probe says the server returns the logprobs
    scorer = _SCORERS[scorer_kind](
        options.get("scorer_model", options["model"]), scorer_urls, api_key=api_key, **extra
    )
    return policy, scorer


def _auto_flag(options: dict[str, str], name: str) -> bool | None:
    """Option ``name``: ``auto`` (or absent) is ``None``, else on or off."""
    value = options.get(name, "auto")
    if value.strip().lower() == "auto":
        return None
    try:
        return parse_flag(name, value)
    except ValueError:
        raise ValueError(f"{name} must be auto, on or off, got {value!r}") from None


def _with_calculator(
    provider: OpenAIProvider, calculator: bool | None, *, probing: bool, mode: str
) -> OpenAIProvider | ServerCalculator:
    """``provider`` with the calculator the ``calculator`` option asks for (``None``: the
    default, on with :data:`CALCULATOR_PRESET`, decided by the probe where it picks the
    preset)."""
    if calculator is not None:
        return ServerCalculator(provider) if calculator else provider
    if provider.preset is not None:  # named with template=
        return ServerCalculator(provider) if provider.preset.name == CALCULATOR_PRESET else provider
    if probing and mode not in ("chat_prefill", "chat_next_step"):
        return ServerCalculator(provider, auto=True)  # the probe picks the preset
    return provider  # the plain template, or a chat preset
