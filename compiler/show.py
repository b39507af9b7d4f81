"""What `--emit STAGE` prints: the resolved spec, the graph with its records and facts after
any graph stage, the plan, or the program."""

from __future__ import annotations

import dataclasses
import json
from typing import Any


def emit_stage(result, stage: str) -> str:
    """The text `--emit STAGE` prints for a compilation stopped after `stage`."""
    if stage == "spec":
        return result.resolved_yaml
    if stage == "plan":
        return json.dumps(result.plan, indent=2) + "\n"
    if stage == "program":
        return result.program
    return json.dumps(graph_document(result.graph), indent=2, sort_keys=True) + "\n"


def graph_document(g) -> dict:
    """The graph as JSON: every node with its record, every edge with its kind, and the facts
    the stages have set so far (the spec itself is the `spec` stage's output, not repeated)."""
    from nestgraph.compiler.ir import facts

    known = {f.name: _plain(getattr(facts(g), f.name))
             for f in dataclasses.fields(facts(g)) if f.name != "spec"}
    nodes = [{"id": node, **{key: _plain(value) for key, value in data.items()}}
             for node, data in sorted(g.nodes(data=True))]
    edges = [{"from": u, "to": v, "kind": k} for u, v, k in sorted(g.edges(keys=True))]
    return {"name": g.graph.get("name", ""), "nodes": nodes, "edges": edges,
            "facts": {k: v for k, v in known.items() if v not in (None, [], {})}}


def _plain(value: Any) -> Any:
    """Records as JSON values: dataclasses and pydantic models by their fields."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
