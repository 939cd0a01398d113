"""A fast fixed-latency OpenAI-compatible server for benchmarks, meant to run in its own process.

Plain ``asyncio.Protocol`` HTTP/1.1 (keep-alive, ``Content-Length`` bodies), so that thousands
of requests in flight cost the server little; it answers ``/v1/completions`` and
``/v1/chat/completions`` after a fixed latency, with vLLM's ``stop_reason``, honouring ``n``.
Several replicas can run in one process (one port each), every one with its own prefix cache:

- **prefix-cache latency model** (``--per-token-ms``): a replica keeps an LRU of 16-word blocks
  (chained hashes, as vLLM's automatic prefix caching) of every prompt and generated text it
  has seen, up to ``--cache-blocks``; a request costs ``latency + uncached prompt words ×
  per_token``. ``GET /stats`` reports requests, prompt words sent and prompt words evaluated
  (not found in the cache), per replica.

The model writes ``Step k: choice i.`` (and ``--step-words`` more words, which differ from
node to node) until the prompt has ``depth - 1`` steps, then ``The
answer is \\boxed{4}.`` and stops (EOS).

Usage (prints one line ``PORTS p1 p2 ...`` once listening)::

    python benchmarks/fake_openai_server.py --latency 0.2 --depth 8 --replicas 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

__all__ = ("PrefixCache", "Replica", "ServerConfig", "main")

BLOCK = 16
"""Words per cache block."""


@dataclass
class ServerConfig:
    """How every replica behaves."""

    latency_s: float = 0.2
    depth: int = 8
    per_token_s: float = 0.0
    cache_blocks: int = 4096
    step_words: int = 0
    """Words of reasoning in every step (a tag of the prompt, so every node's text differs)."""


class PrefixCache:
    """An LRU of chained block hashes: how many leading words of a text a replica has cached."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._blocks: OrderedDict[int, None] = OrderedDict()

    @staticmethod
    def _chain(words: list[str]) -> list[int]:
        hashes, h = [], 0
        for start in range(0, len(words) - len(words) % BLOCK, BLOCK):
            h = hash((h, *words[start : start + BLOCK]))
            hashes.append(h)
        return hashes

    def lookup(self, words: list[str]) -> int:
        """Cached leading words (whole blocks), refreshing the blocks found."""
        found = 0
        for h in self._chain(words):
            if h not in self._blocks:
                break
            self._blocks.move_to_end(h)
            found += BLOCK
        return found

    def insert(self, words: list[str]) -> None:
        """Cache every whole block of ``words``."""
        for h in self._chain(words):
            self._blocks[h] = None
            self._blocks.move_to_end(h)
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)


@dataclass
class Replica:
    """One replica's cache and counters."""

    config: ServerConfig
    cache: PrefixCache = field(init=False)
    requests: int = 0
    prompt_words: int = 0
    evaluated_words: int = 0

    def __post_init__(self) -> None:
        self.cache = PrefixCache(self.config.cache_blocks)

    def stats(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "prompt_words": self.prompt_words,
            "evaluated_words": self.evaluated_words,
        }

    def answer(self, path: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """The delay and the JSON answer of one generation request (``prompt`` may be a list,
        as vLLM takes it: ``n`` choices of each prompt in turn, the usage summed; the copies of
        a prompt in one list sample as its ``n`` choices would)."""
        chat = path.endswith("/chat/completions")
        if chat:
            prompts = ["\n".join(str(m.get("content", "")) for m in body["messages"])]
        else:
            raw = body["prompt"]
            prompts = [str(p) for p in raw] if isinstance(raw, list) else [str(raw)]
        n = int(body.get("n") or 1)
        stops = body.get("stop") or ["\n\n"]
        stop = stops if isinstance(stops, str) else stops[0]
        keep = bool(body.get("include_stop_str_in_output"))
        self.requests += 1
        delay = self.config.latency_s
        choices: list[dict[str, Any]] = []
        copies: dict[str, int] = {}
        prompt_words = 0
        judging = not chat and body.get("logprobs") is not None
        for prompt in prompts:
            if judging:  # a judge's request: the label's logprobs (see :func:`_judged`)
                choices.append(_judged(prompt, len(choices)))
                prompt_words += len(prompt.split())
                continue
            depth = prompt.count("Step ")
            words = prompt.split()
            prompt_words += len(words)
            if self.config.per_token_s > 0:
                cached = self.cache.lookup(words)
                self.evaluated_words += len(words) - cached
                delay += (len(words) - cached) * self.config.per_token_s
            first = copies.get(prompt, 0)
            copies[prompt] = first + n
            for i in range(first, first + n):
                if depth >= self.config.depth - 1:
                    text, extra = "The answer is \\boxed{4}.", None
                else:
                    text = f"Step {depth + 1}: choice {i}."
                    if self.config.step_words:
                        tag = zlib.crc32(f"{prompt}{i}".encode()) & 0xFFFF
                        text += "".join(f" r{tag:x}{j}" for j in range(self.config.step_words))
                    extra = stop
                    if keep:
                        text += stop
                if self.config.per_token_s > 0:
                    self.cache.insert(words + text.split())
                choice: dict[str, Any] = {
                    "index": len(choices),
                    "finish_reason": "stop",
                    "stop_reason": extra,
                }
                if chat:
                    choice["message"] = {"role": "assistant", "content": text}
                else:
                    choice["text"] = text
                choices.append(choice)
        self.prompt_words += prompt_words
        answer = {
            "id": "bench",
            "object": "chat.completion" if chat else "text_completion",
            "created": 0,
            "model": body.get("model", "m"),
            "choices": choices,
            "usage": {"prompt_tokens": prompt_words, "completion_tokens": 6 * len(choices)},
        }
        return delay, answer


def _judged(prompt: str, index: int) -> dict[str, Any]:
    """A judge's answer (one token, its top logprobs): "Yes" is 0.9 likely where the last step
    of the prompt is ``choice 0`` (as the benchmark's in-process scorer scores it), else 0.5."""
    last = prompt.rsplit("Step ", 1)[-1]
    yes = 0.9 if "choice 0" in last else 0.5
    top = {" Yes": math.log(yes), " No": math.log(1 - yes)}
    logprobs = {"tokens": [" Yes"], "token_logprobs": [top[" Yes"]], "top_logprobs": [top]}
    return {"index": index, "text": " Yes", "finish_reason": "length", "logprobs": logprobs}


def _response(status: int, payload: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


class _Http(asyncio.Protocol):
    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            lines = head.split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, target = lines[0].split(" ")[:2]
            self._dispatch(method, target.split("?")[0], body)

    def _send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _dispatch(self, method: str, path: str, raw: bytes) -> None:
        loop = asyncio.get_running_loop()
        if path.endswith("/stats"):
            self._send(_response(200, json.dumps(self.replica.stats()).encode()))
        elif path.endswith("/models"):
            self._send(_response(200, b'{"object":"list","data":[{"id":"m","owned_by":"vllm"}]}'))
        elif path.endswith("/completions") and method == "POST":
            delay, answer = self.replica.answer(path, json.loads(raw))
            loop.call_later(delay, self._send, _response(200, json.dumps(answer).encode()))
        else:
            self._send(_response(404, b'{"error":{"message":"no route"}}'))


async def _serve(config: ServerConfig, replicas: int) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for _ in range(replicas):
        replica = Replica(config)
        server = await loop.create_server(partial(_Http, replica), "127.0.0.1", 0, backlog=4096)
        servers.append(server)
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print("PORTS", *ports, flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request")
    parser.add_argument("--depth", type=int, default=8, help="steps of every solution")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--per-token-ms", type=float, default=0.0, help="per uncached word")
    parser.add_argument("--cache-blocks", type=int, default=4096, help="per replica")
    parser.add_argument("--step-words", type=int, default=0, help="words of every step")
    args = parser.parse_args(argv)
    config = ServerConfig(
        args.latency, args.depth, args.per_token_ms / 1e3, args.cache_blocks, args.step_words
    )
    asyncio.run(_serve(config, args.replicas))


if __name__ == "__main__":
    main(sys.argv[1:])
