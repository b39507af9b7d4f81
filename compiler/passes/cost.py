"""Cost: weights and forward FLOPs per token for each level.

Requires: shapes. Ensures: ``g.graph["cost"]`` (level -> {"params", "flops_per_token"}).
FLOPs count the forward pass of what the level owns (2 per multiply-add); an attention cache
costs its scores and weighted sum over the average context of a sequence.
"""

from __future__ import annotations

import networkx as nx

from nestgraph.compiler.ir import levels, owned_by
from nestgraph.compiler.registry import forward_flops


def count_cost(g: nx.DiGraph) -> None:
    spec, counts = g.graph["spec"], g.graph["part_params"]
    cost = {}
    for lv in levels(g):
        owned = owned_by(g, lv.name)
        params = sum(counts.get(p.name, 0) for p in owned)
        flops = sum(forward_flops(p, spec.modules.get(p.module), spec.model, spec.train.seq_len)
                    for p in owned)
        cost[lv.name] = {"params": params, "flops_per_token": flops}
    init_owner = g.graph.get("init_owner")
    if init_owner:
        extra = sum(counts.get(p, 0) for p in initial_states(g))
        cost[init_owner]["initial_state_params"] = extra
    g.graph["cost"] = cost


def initial_states(g: nx.DiGraph) -> list[str]:
    """Parts whose initial state the slowest step level meta-learns (sequence-lifetime levels)."""
    out = []
    for lv in levels(g):
        if g.graph["kinds"][lv.name] in ("in_context", "memory") and lv.lifetime == "sequence":
            out.extend(p.name for p in owned_by(g, lv.name))
    return out
