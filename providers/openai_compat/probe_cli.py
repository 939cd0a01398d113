"""``rebase-agent probe``: what an OpenAI-compatible server supports, and the options to use.

Registered through the ``rebase_agent.commands`` entry-point group, so the core command line
never imports this package.
"""

from __future__ import annotations

import os
import sys
from functools import partial

import click
import openai

from providers.openai_compat.probe import ProbeReport, probe_server
from rebase_agent.commands import option_pairs, run_command

__all__ = ("probe",)

_KNOWN = {"model", "base_url", "server", "api_key_env"}


async def _run(
    urls: list[str], model: str, server: str | None, key: str | None, timeout_s: float
) -> list[ProbeReport]:
    reports = []
    for url in urls:
        async with openai.AsyncOpenAI(
            base_url=url, api_key=key or "EMPTY", max_retries=0, timeout=timeout_s
        ) as client:
            reports.append(await probe_server(client, model, server=server, secret=key or ""))
    return reports


@click.command()
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="model (required), base_url (default http://localhost:8000/v1; commas for replicas), "
    "server (default: detected), api_key_env (default OPENAI_API_KEY).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds per probe request.",
)
def probe(options: tuple[str, ...], as_json: bool, timeout_s: float) -> None:
    """Check what an OpenAI-compatible server really does (completions or chat, continuing an
    assistant message, n, stop strings, logprobs, usage per choice, prefix caching, PRM
    endpoints); print a table and the --option's for `solve --backend openai`. Exits 1 when
    the server cannot run a search."""
    opts = option_pairs(options)
    unknown = sorted(set(opts) - _KNOWN)
    if unknown:
        raise click.BadParameter(
            f"unknown probe options {unknown}; known: {sorted(_KNOWN)}", param_hint="--option"
        )
    if "model" not in opts:
        raise click.BadParameter("the probe needs --option model=NAME", param_hint="--option")
    if timeout_s <= 0:
        raise click.BadParameter(f"must be > 0, got {timeout_s}", param_hint="--timeout")
    server = opts.get("server")
    if server in ("auto", ""):
        server = None
    key = os.environ.get(opts.get("api_key_env", "OPENAI_API_KEY"))
    urls = opts.get("base_url", "http://localhost:8000/v1").split(",")
    reports = run_command(partial(_run, urls, opts["model"], server, key, timeout_s))
    if as_json:
        click.echo("[" + ",\n".join(r.model_dump_json(indent=2) for r in reports) + "]")
    else:
        for report in reports:
            click.echo(f"{report.base_url} (model {report.model!r})")
            click.echo(report.table())
            if report.fatal is None:
                click.echo(
                    "\nuse: rebase-agent solve PROBLEM --backend openai " + report.command_line()
                )
            click.echo("")
    fatal = [r.fatal for r in reports if r.fatal is not None]
    for message in fatal:
        click.echo(f"error: no search can run: {message}", err=True)
    if fatal:
        sys.exit(1)
