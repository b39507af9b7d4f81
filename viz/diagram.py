"""A drawing as data: nested clusters, nodes and typed edges, before any output format.

The views (`levels`, `modules`) build a `Diagram`; `dot.py`, `mermaid.py` and `as_json` write
it. Everything is kept in insertion order, and the views insert in the compiler's order, so
the same spec always gives the same text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Edge kinds, how they are drawn, and what the legend says of each.
EDGE_KINDS: dict[str, dict[str, str]] = {
    "data": {"style": "solid", "color": "#333333", "legend": "data flow (forward)"},
    "teach": {"style": "dashed", "color": "#c0392b",
              "legend": "teach signal (gradient of the level's objective)"},
    "values": {"style": "dotted", "color": "#2471a3",
               "legend": "generated values (keys, values, rates; self-made M(v))"},
    "updates": {"style": "bold", "color": "#1e8449", "legend": "updates (level -> what it owns)"},
    "init": {"style": "dashed", "color": "#7d3c98",
             "legend": "meta-learns the initial state"},
    "context": {"style": "dashed", "color": "#b9770e",
                "legend": "context flow between levels (output / gradients of)"},
}

# One colour per level, fastest first (light for areas, strong for marks); both repeat past
# their end.
PALETTE = ("#d6eaf8", "#d5f5e3", "#fcf3cf", "#fadbd8", "#e8daef", "#d1f2eb", "#fdebd0",
           "#eaeded")
STRONG = ("#2e86c1", "#28b463", "#d4ac0d", "#cb4335", "#7d3c98", "#17a589", "#ca6f1e",
          "#566573")


def level_colors(plan: dict) -> dict[str, tuple[str, str]]:
    """level -> (light, strong) colour, in the plan's order (fastest first)."""
    return {lv["name"]: (PALETTE[i % len(PALETTE)], STRONG[i % len(STRONG)])
            for i, lv in enumerate(plan["levels"])}


@dataclass
class Node:
    id: str
    label: str  # Graphviz HTML-like label body (without the outer < >)
    shape: str = "box"
    fill: str = "#ffffff"
    style: str = "rounded,filled"
    text: str = ""  # the label as plain lines, for formats without HTML (mermaid)


@dataclass
class Edge:
    source: str
    target: str
    kind: str  # a key of EDGE_KINDS
    label: str = ""
    color: str = ""  # overrides the kind's colour (an `updates` edge takes its level's)
    constraint: bool = True  # False: the edge does not pull ranks (back edges, loops)
    # Laid out from target to source, drawn pointing at the target: an edge that goes "up"
    # (the loss teaching a level) without pulling the loss above the levels.
    upward: bool = False


@dataclass
class Cluster:
    id: str
    label: str  # HTML-like
    text: str = ""  # plain
    fill: str = "#ffffff"
    color: str = "#555555"
    nodes: list[Node] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)

    def walk(self):
        yield self
        for c in self.clusters:
            yield from c.walk()


@dataclass
class Diagram:
    name: str
    title: str
    direction: str = "TB"
    nodes: list[Node] = field(default_factory=list)  # outside every cluster
    clusters: list[Cluster] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    legend: list[str] = field(default_factory=list)  # edge kinds shown in the legend

    def all_clusters(self) -> list[Cluster]:
        return [c for top in self.clusters for c in top.walk()]

    def node_ids(self) -> set[str]:
        ids = {n.id for n in self.nodes}
        return ids | {n.id for c in self.all_clusters() for n in c.nodes}


def as_json(diagram: Diagram) -> dict[str, Any]:
    """The diagram as plain data (``--format json``)."""
    return {"view": diagram.name, **asdict(diagram)}


def escape(text: str) -> str:
    """Text safe inside a Graphviz HTML-like label."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def html_lines(first: str, *rest: str) -> str:
    """A bold first line and plain lines below it, each escaped."""
    lines = [f"<b>{escape(first)}</b>"] + [escape(r) for r in rest if r]
    return "<br/>".join(lines)


# ------------------------------------------------------- parts, as both views label them


def part_layers(part: dict) -> int:
    """How many layers repeat this part (0 when it is not per layer)."""
    paths = part["paths"]
    return len(paths) if paths and all(p.startswith("layers.") for p in paths) else 0


def part_shapes(part: dict, limit: int = 3) -> str:
    items = [f"{k} {'×'.join(map(str, v))}" for k, v in part["shapes"].items()]
    if len(items) > limit:
        items = items[:limit] + [f"+{len(items) - limit} more"]
    return ", ".join(items)
