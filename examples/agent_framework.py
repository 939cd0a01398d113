"""Two ways an agent uses REBASE.

1. As its model: any framework that speaks the OpenAI API points its base URL at
   ``rebase-agent serve`` and names a route. Here the plain ``openai`` client does it, against a
   server started in-process on a free port (run ``rebase-agent serve --config my.toml`` for a
   real deployment).
2. As a tool: an async agent loop calls :func:`rebase_agent.solve` when a step needs careful
   reasoning, and reads the answer and the votes from the result.

Both run offline on the built-in scripted backend; pass ``--backend llama`` (with the ``llama``
extra) for the local Gemma 3 270M, or any other installed backend.

    python examples/agent_framework.py [--backend NAME]
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import openai
import uvicorn

from rebase_agent import RebaseConfig, solve
from rebase_agent.backends import load_backend
from rebase_server import RouteConfig, ServerConfig, create_app


@asynccontextmanager
async def rebase_server(backend: str) -> AsyncIterator[str]:
    """Serve one route, ``rebase-small``, on a free local port; yield the base URL."""
    route = RouteConfig(backend=backend, search=RebaseConfig(budget=8, max_depth=6))
    app = create_app(ServerConfig(routes={"rebase-small": route}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await anyio.sleep(0.05)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/v1"
        server.should_exit = True


async def model_agent(backend: str) -> None:
    """An agent whose model is the REBASE server, through the openai client."""
    async with rebase_server(backend) as base_url:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="unused-locally")
        reply = await client.chat.completions.create(
            model="rebase-small",
            messages=[{"role": "user", "content": "What is 6 * 7?"}],
            extra_body={"rebase": {"budget": 8}},
        )
        await client.close()
    summary = (reply.model_extra or {}).get("rebase", {})
    tokens = reply.usage.total_tokens if reply.usage else None
    print("model agent:", summary.get("answer"), "| tokens:", tokens)


async def tool_agent(backend: str) -> None:
    """An agent loop that calls REBASE as a tool for the steps that need it."""
    provider, scorer = load_backend(backend)()
    tasks = ["What is 6 * 7?", "What is 12 + 30?"]
    notes: list[str] = []
    for task in tasks:  # the agent's own loop: plan, call tools, record
        result = await solve(task, provider=provider, scorer=scorer, config=RebaseConfig(budget=8))
        votes = ", ".join(f"{v.answer}×{v.count}" for v in result.votes[:3])
        notes.append(f"{task} -> {result.answer} (votes {votes})")
    print("tool agent:", *notes, sep="\n  ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="scripted")
    args = parser.parse_args()
    anyio.run(model_agent, args.backend)
    anyio.run(tool_agent, args.backend)


if __name__ == "__main__":
    main()
