"""The three drawings of a compiled spec, in every output format `nestgraph graph` offers."""

from __future__ import annotations

import json

from nestgraph.viz import dot, mermaid, schedule
from nestgraph.viz.diagram import as_json
from nestgraph.viz.levels import levels_diagram
from nestgraph.viz.modules import modules_diagram

VIEWS = ("levels", "schedule", "modules")
TEXT_FORMATS = ("dot", "json", "mermaid")


def text(plan: dict, spec, view: str, fmt: str, depth: int = 1, direction: str = "TB") -> str:
    """The drawing as text: DOT, JSON or Mermaid."""
    if view == "schedule":
        timeline = schedule.schedule(plan)
        if fmt == "json":
            return json.dumps(schedule.as_json(timeline), indent=2) + "\n"
        if fmt == "mermaid":
            return schedule.to_mermaid(timeline)
        return schedule.to_dot(timeline, plan, direction)
    build = levels_diagram if view == "levels" else modules_diagram
    diagram = build(plan, spec, depth, direction)
    if fmt == "json":
        return json.dumps(as_json(diagram), indent=2, ensure_ascii=False) + "\n"
    if fmt == "mermaid":
        return mermaid.to_mermaid(diagram)
    return dot.to_dot(diagram)
