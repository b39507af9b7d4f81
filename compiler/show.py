"""What `--emit STAGE` prints for each stage of the pipeline."""

from __future__ import annotations

import json


def emit_stage(result, stage: str) -> str:
    """The text `--emit STAGE` prints."""
    import networkx as nx

    g = result.graph
    if stage == "spec":
        return result.resolved_yaml
    if stage in ("ir", "validated"):
        data = nx.node_link_data(g, edges="edges")
        data["graph"] = {}
        data["nodes"] = [{"id": n["id"]} for n in data["nodes"]]
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    if stage == "schedule":
        rows = [f"{name:<16} {g.graph['kinds'][name]:<14} every {g.graph['tokens'][name]} tokens"
                for name in g.graph["order"]]
        return "\n".join(rows) + "\n"
    if stage == "shapes":
        return "".join(f"{n} {list(s)}\n" for n, s in g.graph["param_shapes"].items())
    if stage == "plan":
        return json.dumps(result.plan, indent=2) + "\n"
    return result.program
