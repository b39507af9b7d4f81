"""A `Diagram` as a Mermaid flowchart (``--format mermaid``): renders on GitHub and in many
Markdown editors without Graphviz. Clusters become nested subgraphs; edge kinds keep their
meaning through the arrow style (solid data, dotted signals and values, thick updates)."""

from __future__ import annotations

import re

from nestgraph.viz.diagram import Cluster, Diagram

_ARROWS = {"data": "-->", "teach": "-.->", "values": "-.->", "updates": "==>", "init": "-.->",
           "context": "-.->"}


def _id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def _label(text: str) -> str:
    lines = [line.replace('"', "'") for line in text.splitlines() if line]
    return "<br/>".join(lines)


def _cluster(c: Cluster, depth: int) -> list[str]:
    pad = "    " * depth
    lines = [f'{pad}subgraph {_id(c.id)}["{_label(c.text)}"]']
    lines += [f'{pad}    {_id(n.id)}["{_label(n.text)}"]' for n in c.nodes]
    for inner in c.clusters:
        lines += _cluster(inner, depth + 1)
    lines.append(f"{pad}end")
    return lines


def to_mermaid(d: Diagram) -> str:
    lines = [f"flowchart {d.direction}"]
    lines += [f'    {_id(n.id)}["{_label(n.text)}"]' for n in d.nodes]
    for c in d.clusters:
        lines += _cluster(c, 1)
    for e in d.edges:
        arrow = _ARROWS[e.kind]
        label = f'|"{_label(e.label)}"|' if e.label else ""
        lines.append(f"    {_id(e.source)} {arrow}{label} {_id(e.target)}")
    return "\n".join(lines) + "\n"
