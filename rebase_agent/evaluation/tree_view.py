"""One search tree, for people: a terminal rendering and a self-contained HTML page.

Both show every node with its step, reward, width (children allocated), status (expanded,
pruned, finished, unfinished) and answer, and mark the chosen solution and, when grades are
given, whether each answer is right. The HTML page is one file with no external resources: a
tree of ``<details>`` elements that collapse and expand by clicking, with all text escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from rebase_agent.result import SearchResult
from rebase_agent.tree import NodeRecord

__all__ = ("render_html", "render_text")

_MARKS = {"finished": "✔ finished", "pruned": "✂ pruned", "unfinished": "… unfinished"}


def _children(result: SearchResult) -> dict[int | None, list[NodeRecord]]:
    out: dict[int | None, list[NodeRecord]] = {}
    for node in result.nodes:
        out.setdefault(node.parent, []).append(node)
    for kids in out.values():
        kids.sort(key=lambda n: n.id)
    return out


def _one_line(text: str, limit: int) -> str:
    flat = text.replace("\r", "").rstrip("\n").replace("\n", " ⏎ ")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _verdict(answer: str | None, grades: Mapping[str, bool] | None) -> str:
    if answer is None or grades is None or answer not in grades:
        return ""
    return " (right)" if grades[answer] else " (wrong)"


def render_text(
    result: SearchResult, *, grades: Mapping[str, bool] | None = None, width: int = 100
) -> str:
    """The tree as indented text, one node a line.

    Args:
        result: A search result with its ``nodes``.
        grades: Answer → correct, to mark answers right or wrong.
        width: Step text is cut to about this many characters.
    """
    kids = _children(result)
    lines = [
        f"problem: {_one_line(result.problem, width)}",
        f"strategy {result.strategy}, budget {result.config.budget}, stopped {result.stopped}; "
        f"answer {result.answer!r}{_verdict(result.answer, grades)}",
    ]
    if not result.nodes:
        return "\n".join([*lines, "(no tree stored for this search)"]) + "\n"

    def walk(node: NodeRecord, prefix: str, last: bool) -> None:
        branch = "└─ " if last else "├─ "
        status = _MARKS.get(node.status, node.status)
        answer = "" if node.answer is None else f" answer={node.answer}"
        answer += _verdict(node.answer, grades)
        chosen = " ★ chosen" if node.id == result.chosen else ""
        lines.append(
            f"{prefix}{branch}[{node.id}] r={node.reward:.3f} w={node.width} {status}"
            f"{answer}{chosen} | {_one_line(node.step, width)}"
        )
        below = kids.get(node.id, [])
        for i, child in enumerate(below):
            walk(child, prefix + ("   " if last else "│  "), i == len(below) - 1)

    roots = kids.get(None, [])
    for root in roots:
        top = kids.get(root.id, [])
        lines.append(f"[{root.id}] root w={root.width}")
        for i, child in enumerate(top):
            walk(child, "", i == len(top) - 1)
    return "\n".join(lines) + "\n"


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
pre{white-space:pre-wrap;margin:.2em 0 .4em 1.2em;background:#f6f6f6;padding:.3em .5em}
details{margin-left:1.2em;border-left:1px dotted #bbb;padding-left:.4em}
summary{cursor:pointer}
.leaf{margin-left:2.2em}
.badge{font-size:11px;padding:0 .4em;border-radius:3px;margin-left:.3em}
.finished{background:#d8f3dc}.pruned{background:#f8d7da}.expanded{background:#e2e8f0}
.unfinished{background:#fff3cd}.open{background:#eee}
.chosen{outline:2px solid #2563eb}.right{color:#15803d}.wrong{color:#b91c1c}
.meta{color:#555;font-size:12px}
"""

_JS = """
function setAll(open){document.querySelectorAll('details').forEach(d=>{d.open=open;});}
function applyHash(){const m=location.hash.match(/^#collapse=([0-9,]+)$/);
 if(!m)return;m[1].split(',').forEach(id=>{const d=document.getElementById('node-'+id);
 if(d&&d.open)d.querySelector('summary').click();});}
window.addEventListener('DOMContentLoaded',applyHash);
"""


def render_html(
    result: SearchResult,
    *,
    grades: Mapping[str, bool] | None = None,
    gold: str | None = None,
    title: str | None = None,
) -> str:
    """A self-contained HTML page: the problem, the outcome and a collapsible tree.

    Every node with children is a ``<details id="node-ID" open>``; clicking its summary
    collapses it. The page also clicks the nodes named in its URL's ``#collapse=1,5`` shut.
    """
    e = html.escape
    kids = _children(result)

    def node_html(node: NodeRecord) -> str:
        cls = "chosen" if node.id == result.chosen else ""
        verdict = _verdict(node.answer, grades)
        answer = ""
        if node.answer is not None:
            good = "right" if verdict == " (right)" else "wrong" if verdict else ""
            answer = f' <span class="{good}">answer: {e(node.answer)}{e(verdict)}</span>'
        scores = ", ".join(f"{s:.3f}" for s in node.step_scores)
        head = (
            f'<span class="{cls}">[{node.id}]</span> <b>r={node.reward:.3f}</b> w={node.width}'
            f'<span class="badge {e(node.status)}">{e(node.status)}</span>{answer}'
            f'{" ★ chosen" if cls else ""} <span class="meta">scores [{e(scores)}], '
            f"{node.completion_tokens} tokens, {e(str(node.finish_reason))}</span>"
        )
        if node.parent is None:
            head = f"[{node.id}] <b>problem</b> w={node.width}"
        step = f"<pre>{e(node.step.rstrip())}</pre>" if node.step.strip() else ""
        below = kids.get(node.id, [])
        if not below:
            return f'<div class="leaf" id="node-{node.id}">{head}{step}</div>'
        inner = "".join(node_html(child) for child in below)
        return f'<details id="node-{node.id}" open><summary>{head}</summary>{step}{inner}</details>'

    tree = "".join(node_html(root) for root in kids.get(None, [])) or "<p>(no tree stored)</p>"
    usage = result.usage
    outcome = f"answer <b>{e(str(result.answer))}</b>{e(_verdict(result.answer, grades))}" + (
        f", gold <b>{e(gold)}</b>" if gold is not None else ""
    )
    heading = e(title or "REBASE search tree")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{heading}</title>
<style>{_CSS}</style><script>{_JS}</script></head>
<body><h1>{heading}</h1>
<pre>{e(result.problem)}</pre>
<p>{outcome}. Strategy {e(result.strategy)}, budget {result.config.budget}, stopped
{e(result.stopped)}; {len(result.candidates)} finished, {result.unfinished} unfinished;
{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens.</p>
<p><button onclick="setAll(true)">expand all</button>
<button onclick="setAll(false)">collapse all</button>
<span class="meta">r: reward, w: children allocated; click a node to fold it.</span></p>
{tree}
</body></html>
"""
