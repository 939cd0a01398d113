"""REBASE as an MCP tool, through the official ``mcp`` client.

Starts ``rebase-agent mcp`` as a subprocess over stdio (as Claude Desktop or Cursor would, from
their ``mcpServers`` config), lists its tools, and calls ``solve`` with progress reports. It runs
offline on the built-in scripted backend; pass ``--backend llama`` for the local Gemma 3 270M.

    python examples/mcp_client.py [--backend NAME]

Needs the ``mcp`` extra: ``pip install 'rebase-agent[mcp]'``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

import anyio
from mcp import Client, StdioServerParameters


async def main(backend: str) -> None:
    """Solve one problem with the solve tool; print the progress, the answer and the votes."""
    with tempfile.TemporaryDirectory() as folder:
        config = pathlib.Path(folder) / "rebase-server.toml"
        config.write_text(
            f'[routes.rebase-small]\nbackend = "{backend}"\nsearch = {{ budget = 8 }}\n'
        )
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "rebase_agent", "mcp", "--config", str(config)]
        )

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            print(f"  progress {progress:g}/{total:g}: {message}" if total else f"  {message}")

        async with Client(params) as client:
            tools = (await client.list_tools()).tools
            print("tools:", ", ".join(tool.name for tool in tools))
            result = await client.call_tool(
                "solve", {"problem": "What is 6 * 7?"}, progress_callback=on_progress
            )
    data = result.structured_content or {}
    votes = ", ".join(f"{v['answer']}×{v['count']}" for v in data.get("votes", [])[:3])
    print(
        "answer:", data.get("answer"), "| votes:", votes, "| tokens:", data["usage"]["total_tokens"]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="scripted")
    anyio.run(main, parser.parse_args().backend)
