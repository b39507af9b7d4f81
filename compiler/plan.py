"""The plan: the resolved graph as plain, ordered, JSON-able data (written as plan.json).

Code generation reads only the plan, so what program.py does is exactly what plan.json says.
"""

from __future__ import annotations

import hashlib
import math

import networkx as nx

from nestgraph.compiler.ir import facts, levels, owned_by, owner_of, parts
from nestgraph.compiler.kinds.mlp import step_size_paths
from nestgraph.compiler.passes.cost import initial_states

PLAN_VERSION = 1


def make_plan(g: nx.DiGraph, resolved_yaml: str) -> dict:
    spec, kinds, cost = facts(g).spec, facts(g).kinds, facts(g).cost
    init_owner, inits = facts(g).init_owner, initial_states(g)
    part_of = {p.name: p for p in parts(g)}
    resets = nested_resets(g)
    out_levels = []
    for lv in levels(g):
        owned = [p.name for p in owned_by(g, lv.name)]
        modules = [path for name in owned for path in part_of[name].paths
                   if part_of[name].kind == "param"]
        if lv.name == init_owner:
            modules += [path for name in inits for path in part_of[name].paths]
        out_levels.append({
            "name": lv.name, "kind": kinds[lv.name], "every": _every(lv), "period": lv.period,
            "unit": lv.unit, "tokens": facts(g).tokens[lv.name], "lifetime": lv.lifetime,
            "context": lv.context if not lv.source else f"{lv.context} of {lv.source}",
            "objective": lv.objective, "rule": lv.rule.model_dump(mode="json"), "meta": lv.meta,
            "owns": owned, "initial_states": inits if lv.name == init_owner else [],
            "modules": modules, **cost[lv.name],
        })
        if resets.get(lv.name):
            out_levels[-1]["resets"] = resets[lv.name]
        if kinds[lv.name] == "in_context" and isinstance(getattr(lv.rule, "lr", 0), str):
            out_levels[-1]["step_sizes"] = step_size_paths(modules)
        if kinds[lv.name] == "optimizer":
            out_levels[-1]["source"] = lv.source
    in_context = [lv["period"] for lv in out_levels if lv["kind"] == "in_context"]
    return {
        "plan_version": PLAN_VERSION,
        "name": spec.name,
        "about": spec.about,
        "sha256": hashlib.sha256(resolved_yaml.encode()).hexdigest(),
        "chunk": math.gcd(*in_context) if in_context else spec.train.seq_len,
        "levels": out_levels,
        "parts": [{"name": p.name, "kind": p.kind, "module": p.module, "paths": list(p.paths),
                   "params": facts(g).part_params.get(p.name, 0),
                   "shapes": _shapes(g, p.paths[0]) if p.kind == "param" else {}}
                  for p in sorted(parts(g), key=lambda p: p.name)],
        "totals": {"params": sum(facts(g).part_params.values()),
                   "flops_per_token": sum(lv["flops_per_token"] for lv in out_levels)},
        "train": spec.train.model_dump(mode="json"),
        "data": spec.data.model_dump(mode="json"),
    }


def nested_resets(g: nx.DiGraph) -> dict[str, list[str]]:
    """Nested CMS: level -> module paths of the next faster block of its chain, whose initial
    state it learns and resets (NL §7: level s meta-learns the initial state of level s+1)."""
    spec, tokens, out = facts(g).spec, facts(g).tokens, {}
    for name, module in spec.modules.items():
        if getattr(module, "variant", "") != "nested":
            continue
        owned = [(tokens[owner], owner, part) for part in parts(g)
                 if part.module == name and (owner := owner_of(g, part.name)) is not None
                 and facts(g).kinds.get(owner) == "in_context"]
        owned.sort(key=lambda item: item[0])
        for (_, fast, faster), (_, slower, _) in zip(owned, owned[1:], strict=False):
            if slower != fast:
                out.setdefault(slower, []).extend(faster.paths)
    return out


def _shapes(g: nx.DiGraph, path: str) -> dict[str, list[int]]:
    """The weights under `path` (one copy of a part: its first layer), by their local name."""
    prefix = path + "."
    return {name[len(prefix):]: list(shape) for name, shape in facts(g).param_shapes.items()
            if name.startswith(prefix) or name == path}


def _every(lv) -> str:
    return f"{lv.period} {lv.unit}{'s' if lv.period != 1 else ''}"
