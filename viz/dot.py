"""A `Diagram` as Graphviz DOT text: clusters nested as written, edges styled by kind, a legend."""

from __future__ import annotations

from nestgraph.viz.diagram import EDGE_KINDS, Cluster, Diagram, Edge, Node, escape

FONT = "Helvetica"


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _node(n: Node, pad: str) -> str:
    return (f"{pad}{quote(n.id)} [label=<{n.label}>, shape={n.shape}, style={quote(n.style)}, "
            f"fillcolor={quote(n.fill)}];")


def _cluster(c: Cluster, depth: int) -> list[str]:
    pad = "  " * depth
    lines = [f"{pad}subgraph {quote(c.id)} {{",
             f"{pad}  label=<{c.label}>; style=\"rounded,filled\"; fillcolor={quote(c.fill)}; "
             f"color={quote(c.color)}; penwidth=1.4; labeljust=l;"]
    lines += [_node(n, pad + "  ") for n in c.nodes]
    for inner in c.clusters:
        lines += _cluster(inner, depth + 1)
    lines.append(f"{pad}}}")
    return lines


def _edge(e: Edge) -> str:
    kind = EDGE_KINDS[e.kind]
    attrs = [f"style={kind['style']}", f"color={quote(e.color or kind['color'])}"]
    if e.kind == "updates":
        attrs.append("penwidth=2")
    if e.label:
        attrs.append(f"label=<{escape(e.label)}>")
        attrs.append(f"fontcolor={quote(e.color or kind['color'])}")
    if not e.constraint:
        attrs.append("constraint=false")
    if e.upward:
        attrs.append("dir=back")
        return f"  {quote(e.target)} -> {quote(e.source)} [{', '.join(attrs)}];"
    return f"  {quote(e.source)} -> {quote(e.target)} [{', '.join(attrs)}];"


_SAMPLE = {"solid": "———", "dashed": "- - -", "dotted": "·····", "bold": "━━━"}


def _legend(kinds: list[str]) -> list[str]:
    """One node: a table with a sample of each kind of edge used and what it means."""
    if not kinds:
        return []
    rows = ['<tr><td colspan="2" align="left"><b>legend</b></td></tr>']
    for kind in kinds:
        k = EDGE_KINDS[kind]
        rows.append(f'<tr><td><font color="{k["color"]}"><b>{_SAMPLE[k["style"]]}</b></font>'
                    f'</td><td align="left">{escape(k["legend"])}</td></tr>')
    table = '<table border="0" cellborder="0" cellspacing="1">' + "".join(rows) + "</table>"
    return [f'  "legend" [shape=box, style="rounded", color="#999999", label=<{table}>];']


def to_dot(d: Diagram) -> str:
    lines = [f"digraph {quote(d.name)} {{",
             f"  graph [rankdir={d.direction}, compound=true, newrank=true, fontname={quote(FONT)},"
             f" fontsize=11, nodesep=0.35, ranksep=0.45, label=<{d.title}>, labelloc=t];",
             f"  node [fontname={quote(FONT)}, fontsize=10];",
             f"  edge [fontname={quote(FONT)}, fontsize=9, arrowsize=0.7];"]
    lines += [_node(n, "  ") for n in d.nodes]
    for c in d.clusters:
        lines += _cluster(c, 1)
    lines += [_edge(e) for e in d.edges]
    lines += _legend(d.legend)
    lines.append("}")
    return "\n".join(lines) + "\n"
