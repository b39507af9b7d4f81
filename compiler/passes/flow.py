"""Data flow: no level may learn, within one step, from a level that learns from it.

Requires: resolve (``context`` edges). Ensures: a diagnostic per cycle, showing its path with
the spec position of each context entry along it.
"""

from __future__ import annotations

import networkx as nx

from nestgraph.compiler.ir import edges_of
from nestgraph.compiler.passes.common import level_path, report


def check_flow(g: nx.DiGraph) -> None:
    flows = edges_of(g, "context")
    for cycle in sorted(nx.simple_cycles(flows), key=lambda c: sorted(c)):
        names = [n.split(":", 1)[1] for n in _rotate(cycle)]
        path = " -> ".join(names + [names[0]])
        notes = tuple(f"level '{n}' learns from '{_source(g, n)}' "
                      f"(levels[{level_path(g, n)[1]}].context)" for n in names)
        report(g, f"context flow cycle: {path}", level_path(g, names[0], "context"),
               "a level's context must come from a level that does not, in turn, depend on it",
               "E-FLOW", notes)


def _rotate(cycle: list[str]) -> list[str]:
    # Start at the alphabetically first level, so the message does not depend on set order.
    i = cycle.index(min(cycle))
    return cycle[i:] + cycle[:i]


def _source(g: nx.DiGraph, name: str) -> str:
    return g.nodes[f"level:{name}"]["level"].source
