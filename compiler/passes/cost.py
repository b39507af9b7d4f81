"""Cost: weights and forward FLOPs per token for each level.

Requires: shapes. Ensures: ``g.graph["cost"]`` (level -> {"params", "flops_per_token",
"optimizer_state"}), the last the number of values the level's optimizer keeps (AdamW's two
moments; an optimizer level's memory of the gradients it reads).
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
    for lv in levels(g):
        cost[lv.name]["optimizer_state"] = _optimizer_state(g, lv, cost)
    g.graph["cost"] = cost


def _trained(cost: dict, name: str) -> int:
    """How many values a step level's optimizer updates: its weights and initial states."""
    return cost[name]["params"] + cost[name].get("initial_state_params", 0)


def _optimizer_state(g: nx.DiGraph, lv, cost: dict) -> int:
    kind, rule = g.graph["kinds"][lv.name], lv.rule
    if kind == "step":
        if rule.type == "adamw":
            return 2 * _trained(cost, lv.name)
        if rule.type == "gd" and rule.momentum:
            return _trained(cost, lv.name)
        return 0  # 'memories': the state is counted at the optimizer levels that read it
    if kind != "optimizer" or f"level:{lv.source}" not in g:
        return 0
    read = _trained(cost, lv.source)
    chunk = read if lv.period > 1 else 0  # the gradients summed since it last fired
    if rule.type == "second_moment":
        return read + chunk
    if rule.type == "momentum":
        return 2 * read + chunk  # the memory and its read-out
    tensors = len(_tensors_of(g, lv.source))
    return 2 * read + chunk + tensors * (3 * rule.hidden + 1)  # deep: previous, read-out, MLP


def _tensors_of(g: nx.DiGraph, level: str) -> list[str]:
    paths = [path for p in owned_by(g, level) for path in p.paths]
    paths += [path for name in (initial_states(g) if level == g.graph.get("init_owner") else [])
              for path in g.nodes[f"part:{name}"]["part"].paths]
    prefixes = tuple(p + "." for p in paths)
    return [n for n in g.graph["param_shapes"] if n in paths or n.startswith(prefixes)]


def initial_states(g: nx.DiGraph) -> list[str]:
    """Parts whose initial state the slowest step level meta-learns (sequence-lifetime levels)."""
    out = []
    for lv in levels(g):
        if g.graph["kinds"][lv.name] in ("in_context", "memory") and lv.lifetime == "sequence":
            out.extend(p.name for p in owned_by(g, lv.name))
    return out
