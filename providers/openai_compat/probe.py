"""What an OpenAI-compatible server really does, found out with a dozen small requests.

:func:`probe_server` sends tiny requests (a few tokens each, at temperature 0 where the answer
must be reproducible) and reads what comes back:

- which server it is (llama-server ``/props``, SGLang ``/get_server_info``, Ollama
  ``/api/version``, vLLM ``/version``, ``owned_by`` in ``/models``);
- raw ``/completions``, ``/chat/completions``, and whether a final assistant message is
  continued in place (the ``chat_prefill`` mode);
- whether ``n`` is honoured, and whether ``usage.completion_tokens`` counts every choice
  (llama-server counts one) and which tokenize endpoint can count them instead;
- whether a stop string comes back in the text or is trimmed, and which field tells a stop
  string from the end of output (``stop_reason``, ``matched_stop``, ``stop_type``);
- top logprobs on ``/completions`` and on chat (what the judge and Math-Shepherd scorers read);
- prefix caching, from the server's own counts (llama-server ``timings.cache_n`` /
  ``prompt_n``, ``usage.prompt_tokens_details.cached_tokens``) on a repeated prompt;
- PRM endpoints: vLLM ``/pooling``, ``/classify``, ``/generative_scoring``.

The :class:`ProbeReport` renders as a table (:meth:`ProbeReport.table`), recommends backend
options (:meth:`ProbeReport.options`) and says when no search can run (``fatal``).
:func:`cached_probe` runs it once per ``(base URL, model)`` in a process, for the provider.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Literal

import anyio
import openai
from pydantic import BaseModel, Field

from providers.openai_compat.errors import redact
from providers.openai_compat.requests import mentions_n
from providers.openai_compat.slots import forget, register

__all__ = (
    "ProbeReport",
    "Verdict",
    "cached_probe",
    "count_tokens",
    "probe_server",
)

logger = logging.getLogger("providers.openai_compat")

Verdict = Literal["yes", "no", "unknown"]
StopHandling = Literal["kept", "trimmed", "ignored", "unknown"]
UsageCount = Literal["every_choice", "one_choice", "missing", "unknown"]
Tokenizer = Literal["tokenize_content", "tokenize_prompt", "extras_tokenize"]

STEP_PROMPT = "Question: What is 2 + 2 + 2?\nAnswer:\n\nStep 1: 2 + 2 = 4.\n\nStep 2:"
"""A prompt whose next step a model ends with a blank line, the default step delimiter."""
_DELIMITER = "\n\n"
_N = 3
_N_TOKENS = 8
_COUNT_MESSAGES = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
_COUNT_SO_FAR = "1, 2, 3, 4, 5, 6, 7,"
_CHAT_MARKERS = re.compile(r"instruct|chat|(?:^|[-_./ ])it(?:$|[-_./ ])|assistant", re.IGNORECASE)


class _Answer(BaseModel):
    """One probe request's answer: the status and the JSON body (or the error text)."""

    status: int
    body: Any = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and isinstance(self.body, dict)

    @property
    def missing(self) -> bool:
        """No such route: 404, 405 or 501."""
        return self.status in (404, 405, 501)


class ProbeCheck(BaseModel):
    """One row of the table: what was checked, the verdict and what was seen."""

    name: str
    verdict: str
    detail: str = ""


class ProbeReport(BaseModel):
    """What the server did, and the backend options that follow from it."""

    base_url: str
    model: str
    server: str = "generic"
    """The ``server`` option to use: ``vllm``, ``sglang``, ``llama_server``, ``ollama``,
    ``openai`` or ``generic``."""
    server_seen: str = "unknown"
    """How the server was recognised, e.g. ``llama-server (/props)``."""
    reachable: bool = True
    model_kind: Literal["base", "chat"] = "base"
    completions: Verdict = "unknown"
    chat: Verdict = "unknown"
    chat_prefill: Verdict = "unknown"
    ollama_raw: Verdict = "no"
    n: Verdict = "unknown"
    usage: UsageCount = "unknown"
    tokenizer: Tokenizer | None = None
    stop: StopHandling = "unknown"
    stop_field: str | None = None
    completions_top_logprobs: int = 0
    chat_top_logprobs: int = 0
    prefix_cache: Verdict = "unknown"
    slots: int | None = None
    """Sequences the server decodes at once, where it says (llama-server's ``/props``
    ``total_slots``); requests to it then take slots first (:mod:`~.slots`)."""
    pooling: Verdict = "unknown"
    classify: Verdict = "unknown"
    generative_scoring: Verdict = "unknown"
    checks: list[ProbeCheck] = Field(default_factory=list)
    fatal: str | None = None
    """Why no search can run on this server, or ``None``."""

    @property
    def mode(self) -> str:
        """The provider mode to use."""
        if self.server == "ollama" and self.ollama_raw == "yes":
            return "ollama_raw"
        if self.model_kind == "chat" and self.chat_prefill == "yes":
            return "chat_prefill"
        if self.completions == "yes":
            return "completions"
        if self.chat_prefill == "yes":
            return "chat_prefill"
        return "chat_next_step"

    @property
    def preset(self) -> str:
        """The prompt preset for that mode (see :mod:`rebase_agent.presets`)."""
        return "few_shot_steps" if self.mode in ("completions", "ollama_raw") else "chat_steps"

    @property
    def scorer(self) -> tuple[str, str | None]:
        """The scorer to use, and its ``scorer_api`` (for the judge)."""
        if self.chat_top_logprobs >= 2 and self.chat == "yes" and self.model_kind == "chat":
            return "judge", "chat"
        if self.completions_top_logprobs >= 2:
            return "judge", "completions"
        if self.chat_top_logprobs >= 2:
            return "judge", "chat"
        return "none", None

    def options(self) -> dict[str, str]:
        """The ``--option``s of ``--backend openai`` this report recommends (no key)."""
        out = {
            "model": self.model,
            "base_url": self.base_url,
            "server": self.server,
            "mode": self.mode,
            "template": self.preset,
        }
        scorer, api = self.scorer
        out["scorer"] = scorer
        if api is not None:
            out["scorer_api"] = api
        return out

    def command_line(self) -> str:
        """The options as ``--option KEY=VALUE`` arguments."""
        return " ".join(f"--option {k}={v}" for k, v in self.options().items())

    def table(self) -> str:
        """The checks as an aligned text table."""
        rows = [("check", "result", "seen"), *((c.name, c.verdict, c.detail) for c in self.checks)]
        width = [max(len(r[i]) for r in rows) for i in range(2)]
        lines = [f"{a:<{width[0]}}  {b:<{width[1]}}  {c}".rstrip() for a, b, c in rows]
        lines.insert(1, f"{'-' * width[0]}  {'-' * width[1]}  ----")
        return "\n".join(lines)

    def check(self, name: str, verdict: str, detail: str = "") -> None:
        self.checks.append(ProbeCheck(name=name, verdict=verdict, detail=detail))


async def _call(
    client: openai.AsyncOpenAI, method: str, url: str, body: Mapping[str, Any] | None, secret: str
) -> _Answer:
    """One request; an error status is an answer too. Connection failures raise."""
    try:
        if method == "GET":
            data = await client.get(url, cast_to=object)
        else:
            data = await client.post(url, cast_to=object, body=dict(body or {}))
    except openai.APIStatusError as exc:
        text = redact(f"{exc.message} {exc.body}", secret)
        return _Answer(status=exc.status_code, error=text[:300])
    except openai.APIResponseValidationError as exc:  # pragma: no cover - a non-JSON body
        return _Answer(status=200, error=redact(str(exc), secret)[:300])
    return _Answer(status=200, body=data)


def _choices(answer: _Answer) -> list[dict[str, Any]]:
    if not answer.ok:
        return []
    choices = answer.body.get("choices")
    if not isinstance(choices, list):
        return []
    return sorted((c for c in choices if isinstance(c, dict)), key=lambda c: c.get("index", 0))


def _text(choice: Mapping[str, Any]) -> str:
    if isinstance(choice.get("text"), str):
        return str(choice["text"])
    message = choice.get("message")
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        return str(message["content"])
    return ""


def _usage(answer: _Answer) -> dict[str, Any]:
    usage = answer.body.get("usage") if answer.ok else None
    return usage if isinstance(usage, dict) else {}


def _cached_tokens(answer: _Answer) -> tuple[int | None, int | None]:
    """(prompt tokens reused from a cache, prompt tokens evaluated), where the server says."""
    if not answer.ok:
        return None, None
    timings = answer.body.get("timings")
    if isinstance(timings, dict):
        cache = timings.get("cache_n")
        evaluated = timings.get("prompt_n")
        return (
            int(cache) if isinstance(cache, int) else None,
            int(evaluated) if isinstance(evaluated, int) else None,
        )
    details = _usage(answer).get("prompt_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        return int(details["cached_tokens"]), None
    return None, None


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


async def count_tokens(
    client: openai.AsyncOpenAI,
    root_url: str,
    model: str,
    tokenizer: Tokenizer,
    text: str,
) -> int:
    """The number of tokens of ``text``, from the server's tokenize endpoint.

    Raises:
        openai.OpenAIError: The request failed.
        ValueError: The answer had no token list.
    """
    if tokenizer == "tokenize_content":  # llama-server
        url, body = f"{root_url}/tokenize", {"content": text, "add_special": False}
    elif tokenizer == "tokenize_prompt":  # vLLM, SGLang
        url, body = (
            f"{root_url}/tokenize",
            {"model": model, "prompt": text, "add_special_tokens": False},
        )
    else:  # llama-cpp-python's server
        url, body = f"{root_url}/extras/tokenize", {"input": text, "model": model}
    data = await client.post(url, cast_to=object, body=body)
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, list):
        raise ValueError(f"{url}: no token list in {str(data)[:120]!r}")
    return len(tokens)


async def probe_server(
    client: openai.AsyncOpenAI,
    model: str,
    *,
    server: str | None = None,
    secret: str = "",
) -> ProbeReport:
    """Find out what the server behind ``client`` does (see the module docs).

    Args:
        client: An ``AsyncOpenAI`` client on the server's base URL (``.../v1``).
        model: The model to ask for.
        server: The server kind if known (the ``server`` option); ``None`` detects it.
        secret: The API key, removed from any text quoted from the server.

    Returns:
        The report; ``report.fatal`` says why no search can run (the server is unreachable,
        the model is unknown, or neither completions nor chat work).
    """
    base = str(client.base_url).rstrip("/")
    root = base.removesuffix("/v1")
    report = ProbeReport(base_url=base, model=model)
    try:
        await _probe(client, report, base, root, server, secret)
    except (openai.APIConnectionError, openai.APITimeoutError) as exc:
        report.reachable = False
        report.fatal = f"cannot reach {base}: {redact(str(exc), secret)}"
        report.check("server reachable", "no", redact(type(exc).__name__, secret))
    return report


async def _probe(
    client: openai.AsyncOpenAI,
    report: ProbeReport,
    base: str,
    root: str,
    server: str | None,
    secret: str,
) -> None:
    model = report.model

    async def get(url: str) -> _Answer:
        return await _call(client, "GET", url, None, secret)

    async def post(url: str, body: Mapping[str, Any]) -> _Answer:
        return await _call(client, "POST", url, {"model": model, **body}, secret)

    # Which server, and does it know the model?
    models = await get(f"{base}/models")
    model_ids: list[str] = []
    owners: set[str] = set()
    if models.ok and isinstance(models.body.get("data"), list):
        for entry in models.body["data"]:
            if isinstance(entry, dict):
                model_ids.append(str(entry.get("id", "")))
                owners.add(str(entry.get("owned_by", "")))
    seen, kind, extra = await _identify(get, root, base, owners)
    slots = extra.get("total_slots")
    if isinstance(slots, int) and not isinstance(slots, bool) and slots > 0:
        report.slots = slots
    report.server = server or kind
    report.server_seen = seen if server is None else f"{server} (given); looks like {seen}"
    report.check("server", report.server, report.server_seen)
    if model_ids:
        known = model in model_ids
        report.check(
            "model listed",
            "yes" if known else "no (checked below whether it answers)",
            ", ".join(model_ids[:4]) + (" ..." if len(model_ids) > 4 else ""),
        )
    names = " ".join([model, str(extra.get("model_path", ""))])
    report.model_kind = "chat" if _CHAT_MARKERS.search(names) else "base"
    report.check("model kind", report.model_kind, "from its name: " + _short(names.strip(), 60))
    keep = _keep_fields(report.server)

    # Raw completions, stop strings and the stop field.
    first = await post(
        f"{base}/completions",
        {
            "prompt": STEP_PROMPT,
            "max_tokens": 24,
            "temperature": 0,
            "seed": 0,
            "stop": [_DELIMITER],
            **keep,
        },
    )
    if first.status == 404 and "model" in first.error.lower():
        report.fatal = f"{base}: the server does not know the model {model!r}: {first.error}"
    got = _choices(first)
    if got:
        report.completions = "yes"
        text = _text(got[0])
        report.check(
            "raw /completions", "yes", f"{_short(text)}, finish {got[0].get('finish_reason')}"
        )
        await _stops(post, report, base, got[0], keep)
        await _cache(post, report, base, first, keep)
    else:
        report.completions = "no"
        report.check("raw /completions", "no", f"{first.status} {first.error[:80]}".strip())

    # Chat, and continuing a final assistant message.
    chat = await post(
        f"{base}/chat/completions",
        {
            "messages": [{"role": "user", "content": "What is 2 + 2? Reply with the number."}],
            "max_tokens": 8,
            "temperature": 0,
        },
    )
    if _choices(chat):
        report.chat = "yes"
        report.check("chat /chat/completions", "yes", _short(_text(_choices(chat)[0])))
        await _prefill(post, report, base)
    else:
        report.chat = "no"
        report.chat_prefill = "no"
        report.check("chat /chat/completions", "no", f"{chat.status} {chat.error[:80]}".strip())
    if report.server == "ollama":
        raw = await _call(
            client,
            "POST",
            f"{root}/api/generate",
            {
                "model": model,
                "prompt": STEP_PROMPT,
                "raw": True,
                "stream": False,
                "options": {"num_predict": 8, "temperature": 0},
            },
            secret,
        )
        ok = raw.ok and isinstance(raw.body.get("response"), str)
        report.ollama_raw = "yes" if ok else "no"
        report.check("ollama /api/generate raw", report.ollama_raw, f"{raw.status}")

    if report.completions == "no" and report.chat == "no" and report.ollama_raw == "no":
        report.fatal = report.fatal or (
            f"{base}: neither /completions nor /chat/completions answered for model {model!r} "
            f"({first.status}: {first.error[:120]}; {chat.status}: {chat.error[:120]}), "
            "so no search can run"
        )
        return

    gen_path = "/completions" if report.completions == "yes" else "/chat/completions"
    await _n_and_usage(client, post, report, base, root, gen_path, keep)
    await _logprobs(post, report, base)
    await _prm(post, report, root)


async def _identify(
    get: Any, root: str, base: str, owners: set[str]
) -> tuple[str, str, dict[str, Any]]:
    """(what was seen, the server option, /props fields)."""
    props = await get(f"{root}/props")
    if props.ok and ("default_generation_settings" in props.body or "total_slots" in props.body):
        slots = props.body.get("total_slots")
        return f"llama-server (/props, {slots} slots)", "llama_server", dict(props.body)
    if "vllm" in owners:
        return "vLLM (owned_by in /models)", "vllm", {}
    if "sglang" in owners:
        return "SGLang (owned_by in /models)", "sglang", {}
    if "llamacpp" in owners:
        return "llama-server (owned_by in /models)", "llama_server", {}
    info = await get(f"{root}/get_server_info")
    if info.ok:
        return "SGLang (/get_server_info)", "sglang", {}
    ollama = await get(f"{root}/api/version")
    if ollama.ok and "version" in ollama.body:
        return f"Ollama {ollama.body['version']} (/api/version)", "ollama", {}
    version = await get(f"{root}/version")
    if version.ok and "version" in version.body:
        return f"vLLM {version.body['version']} (/version)", "vllm", {}
    if "api.openai.com" in base:
        return "OpenAI (host)", "openai", {}
    if "me" in owners:
        return "llama-cpp-python's server (owned_by 'me')", "generic", {}
    return "unrecognised, plain OpenAI requests", "generic", {}


def _keep_fields(server: str) -> dict[str, Any]:
    """The fields that ask this server to keep the stop string (as the provider sends them)."""
    if server == "vllm":
        return {"include_stop_str_in_output": True}
    if server == "sglang":
        return {"no_stop_trim": True}
    return {}


async def _stops(
    post: Any, report: ProbeReport, base: str, choice: Mapping[str, Any], keep: Mapping[str, Any]
) -> None:
    text = _text(choice)
    for key in ("stop_type", "stop_reason", "matched_stop"):
        if key in choice:
            report.stop_field = key
    cut = text.find(_DELIMITER)
    if 0 <= cut < len(text) - len(_DELIMITER):
        report.stop = "ignored"
    elif text.endswith(_DELIMITER):
        report.stop = "kept"
    elif choice.get("finish_reason") == "stop":
        # Trimmed, or the model ended its output: the same request without the stop says.
        again = await post(
            f"{base}/completions",
            {"prompt": STEP_PROMPT, "max_tokens": 32, "temperature": 0, "seed": 0, **keep},
        )
        more = _choices(again)
        if more and _text(more[0]).startswith(text + _DELIMITER):
            report.stop = "trimmed"
        elif (
            more
            and _text(more[0]).startswith(text)
            and report.stop_field in ("stop_type", "stop_reason", "matched_stop")
        ):
            word = choice.get("stopping_word", choice.get(report.stop_field))
            report.stop = "trimmed" if word == _DELIMITER else "unknown"
    asked = " (asked to keep it)" if keep else ""
    report.check(f"stop string {_DELIMITER!r}", report.stop, f"{_short(text)}{asked}")
    report.check(
        "stop vs end of output",
        "yes" if report.stop_field else "no",
        f"field {report.stop_field}"
        if report.stop_field
        else "finish_reason 'stop' for both: the text decides ('The answer is')",
    )


async def _cache(
    post: Any, report: ProbeReport, base: str, first: _Answer, keep: Mapping[str, Any]
) -> None:
    again = await post(
        f"{base}/completions",
        {"prompt": STEP_PROMPT, "max_tokens": 1, "temperature": 0, "seed": 0, **keep},
    )
    cached, evaluated = _cached_tokens(again)
    _, evaluated_first = _cached_tokens(first)
    prompt_tokens = _usage(again).get("prompt_tokens")
    if cached is None and evaluated is None:
        report.check("prefix cache", "unknown", "the server reports no cache counts")
        return
    reused = (cached or 0) > 0 or (
        evaluated is not None and evaluated_first is not None and evaluated < evaluated_first
    )
    report.prefix_cache = "yes" if reused else "no"
    report.check(
        "prefix cache",
        report.prefix_cache,
        f"repeated prompt: {cached} cached, {evaluated} evaluated of {prompt_tokens}",
    )


async def _prefill(post: Any, report: ProbeReport, base: str) -> None:
    fields: dict[str, Any] = {}
    if report.server == "vllm":
        fields = {"continue_final_message": True, "add_generation_prompt": False}
    elif report.server == "sglang":
        fields = {"continue_final_message": True}
    answer = await post(
        f"{base}/chat/completions",
        {
            "messages": [*_COUNT_MESSAGES, {"role": "assistant", "content": _COUNT_SO_FAR}],
            "max_tokens": 6,
            "temperature": 0,
            **fields,
        },
    )
    got = _choices(answer)
    text = _text(got[0]) if got else ""
    if not got:
        report.chat_prefill = "no"
    elif re.match(r"\s*8\b", text):
        report.chat_prefill = "yes"
    elif re.match(r"\s*1\b", text) or text.strip() == "":
        report.chat_prefill = "no"
    report.check(
        "continue final assistant msg",
        report.chat_prefill,
        f"after {_COUNT_SO_FAR!r}: {_short(text)}" if got else f"{answer.status}",
    )


async def _n_and_usage(
    client: openai.AsyncOpenAI,
    post: Any,
    report: ProbeReport,
    base: str,
    root: str,
    path: str,
    keep: Mapping[str, Any],
) -> None:
    body: dict[str, Any] = {"n": _N, "max_tokens": _N_TOKENS, "temperature": 1.0, "seed": 1}
    if path == "/completions":
        body["prompt"] = STEP_PROMPT
    else:
        body["messages"] = _COUNT_MESSAGES
    answer = await post(f"{base}{path}", body)
    got = _choices(answer)
    if not got:
        named = mentions_n(answer.error)
        report.n = "no"
        report.check(
            f"n={_N}", "no", f"{answer.status} {'names n' if named else answer.error[:60]}"
        )
        return
    report.n = "yes" if len(got) >= _N else "no"
    report.check(f"n={_N}", report.n, f"{len(got)} choices")
    tokenizer = await _find_tokenizer(client, report, root)
    usage = _usage(answer).get("completion_tokens")
    if not isinstance(usage, int):
        report.usage = "missing"
        report.check("usage per choice", "missing", "no usage.completion_tokens")
        return
    lengths: list[int] | None = None
    if all(c.get("finish_reason") == "length" for c in got):
        lengths = [_N_TOKENS] * len(got)
        how = f"each choice hit max_tokens={_N_TOKENS}"
    elif tokenizer is not None:
        try:
            lengths = [
                await count_tokens(client, root, report.model, tokenizer, _text(c)) for c in got
            ]
            how = "tokenized each choice"
        except (openai.OpenAIError, ValueError):
            lengths = None
    if len(got) < 2:
        report.usage = "every_choice"
        report.check("usage per choice", "n/a", "one choice per request: usage is that choice's")
        return
    if lengths is None:
        report.check("usage per choice", "unknown", f"usage {usage}; choices not countable")
        return
    total = sum(lengths)
    if abs(usage - total) <= len(got):
        report.usage = "every_choice"
    elif any(abs(usage - k) <= 1 for k in lengths):
        report.usage = "one_choice"
    report.check(
        "usage per choice",
        {"every_choice": "yes", "one_choice": "no: counts one choice"}.get(
            report.usage, report.usage
        ),
        f"completion_tokens {usage} for {len(got)} choices of {lengths} tokens ({how})",
    )


async def _find_tokenizer(
    client: openai.AsyncOpenAI, report: ProbeReport, root: str
) -> Tokenizer | None:
    orders: dict[str, list[Tokenizer]] = {
        "llama_server": ["tokenize_content"],
        "vllm": ["tokenize_prompt"],
        "sglang": ["tokenize_prompt"],
        "generic": ["extras_tokenize", "tokenize_content", "tokenize_prompt"],
    }
    order = orders.get(report.server, [])
    for kind in order:
        try:
            if await count_tokens(client, root, report.model, kind, "2 + 2 = 4") > 0:
                report.tokenizer = kind
                break
        except (openai.APIStatusError, ValueError):
            continue
    path = {
        "tokenize_content": "/tokenize",
        "tokenize_prompt": "/tokenize",
        "extras_tokenize": "/extras/tokenize",
    }
    report.check(
        "tokenize endpoint",
        "yes" if report.tokenizer else "no",
        path[report.tokenizer] if report.tokenizer else "none found",
    )
    return report.tokenizer


async def _logprobs(post: Any, report: ProbeReport, base: str) -> None:
    if report.completions == "yes":
        answer = await post(
            f"{base}/completions",
            {
                "prompt": "The capital of France is",
                "max_tokens": 1,
                "temperature": 0,
                "logprobs": 5,
            },
        )
        got = _choices(answer)
        logprobs = got[0].get("logprobs") if got else None
        top = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        if not top and isinstance(content, list) and content and isinstance(content[0], dict):
            # llama-server answers /completions in the chat layout: [{token, logprob}, ...]
            listed = content[0].get("top_logprobs") or []
            top = [{t.get("token"): t.get("logprob") for t in listed if isinstance(t, dict)}]
        if isinstance(top, list) and top and isinstance(top[0], dict):
            report.completions_top_logprobs = len(top[0])
        report.check(
            "top logprobs (/completions)",
            str(report.completions_top_logprobs) if report.completions_top_logprobs else "no",
            f"asked 5: {sorted(top[0])[:5]}"
            if report.completions_top_logprobs and top
            else f"{answer.status} {answer.error[:60]}".strip(),
        )
    if report.chat == "yes":
        answer = await post(
            f"{base}/chat/completions",
            {
                "messages": [{"role": "user", "content": "Is 2 + 2 = 4? Answer Yes or No."}],
                "max_tokens": 1,
                "temperature": 0,
                "logprobs": True,
                "top_logprobs": 5,
            },
        )
        got = _choices(answer)
        logprobs = got[0].get("logprobs") if got else None
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        if isinstance(content, list) and content and isinstance(content[0], dict):
            top_list = content[0].get("top_logprobs")
            report.chat_top_logprobs = len(top_list) if isinstance(top_list, list) else 0
        report.check(
            "top logprobs (chat)",
            str(report.chat_top_logprobs) if report.chat_top_logprobs else "no",
            "asked 5"
            if report.chat_top_logprobs
            else "none returned"
            if answer.ok
            else f"{answer.status} {answer.error[:60]}",
        )
    scorer, api = report.scorer
    report.check(
        "judge / Math-Shepherd scoring",
        "yes" if scorer == "judge" else "no",
        f"top logprobs on {api}"
        if api
        else "no top logprobs: score with a PRM server, or "
        "scorer=none (the arithmetic check alone)",
    )


async def _prm(post: Any, report: ProbeReport, root: str) -> None:
    probes = {
        "pooling": ("/pooling", {"input": "1 + 1 = 2"}),
        "classify": ("/classify", {"input": "1 + 1 = 2"}),
        "generative_scoring": (
            "/generative_scoring",
            {"query": "1 + 1 = 2?", "items": [" Yes"], "label_token_ids": [0, 1]},
        ),
    }
    for name, (path, body) in probes.items():
        answer = await post(f"{root}{path}", body)
        verdict: Verdict = "yes" if answer.ok else "no" if answer.missing else "unknown"
        setattr(report, name, verdict)
        report.check(f"PRM {path}", verdict, f"{answer.status}" if not answer.ok else "answers")


_CACHE: dict[tuple[str, str, str | None], ProbeReport] = {}
_LOCKS: dict[tuple[str, str, str | None], anyio.Lock] = {}


async def cached_probe(
    client: openai.AsyncOpenAI, model: str, *, server: str | None = None, secret: str = ""
) -> ProbeReport:
    """:func:`probe_server`, run once per ``(base URL, model, server)`` in this process;
    concurrent callers wait for the one probe. A report whose server was unreachable is not
    kept, so the next call tries again."""
    key = (str(client.base_url).rstrip("/"), model, server)
    if key in _CACHE:
        return _CACHE[key]
    lock = _LOCKS.setdefault(key, anyio.Lock())
    async with lock:
        if key not in _CACHE:
            report = await probe_server(client, model, server=server, secret=secret)
            if not report.reachable:
                return report
            _CACHE[key] = report
            root = key[0].removesuffix("/v1")
            if report.slots is not None:
                register(root, report.slots)
            else:
                forget(root)
            logger.info("%s: probed, options %s", key[0], report.command_line())
    return _CACHE[key]
