"""Ownership: every weight of the model is owned by exactly one level.

Requires: resolve (which already refused a second owner of any state). Ensures: ``rest``
expanded into ``owns`` edges, and a diagnostic for every weight owned by no level. Non-parametric states (an attention cache) may stay unowned:
their module updates them inside the forward pass.
"""

from __future__ import annotations

import networkx as nx

from nestgraph.compiler.ir import facts, levels, owner_of, parts
from nestgraph.compiler.passes.common import level_path, lost, report


def partition_ownership(g: nx.DiGraph) -> None:
    _expand_rest(g)
    _report_unowned(g)


def _expand_rest(g: nx.DiGraph) -> None:
    takers = [lv for lv in levels(g) if "rest" in lv.owns]
    for extra in takers[1:]:
        report(g, f"level '{extra.name}' owns 'rest', and so does level '{takers[0].name}'",
               level_path(g, extra.name, "owns", extra.owns.index("rest")),
               "only one level can own the remaining weights", "E-OWN")
    if not takers:
        return
    taker = takers[0]
    for part in parts(g):
        # A memory is never an ordinary weight: its own level must claim it.
        if part.kind == "param" and not part.memory and owner_of(g, part.name) is None \
                and part.name not in lost(g).owns:
            g.add_edge(f"level:{taker.name}", f"part:{part.name}", key="owns", kind="owns",
                       item=taker.owns.index("rest"))


def _report_unowned(g: nx.DiGraph) -> None:
    gone = lost(g)
    if "rest" in gone.owns:  # a rejected level took the rest: nothing can be called unowned
        return
    for part in parts(g):
        if part.kind != "param" or part.memory or owner_of(g, part.name) is not None:
            continue  # (an unowned memory is reported by the schedule pass)
        if part.name in gone.owns or part.module in gone.owns:
            continue  # a level the schema rejected claims it
        used = not part.module or g.nodes[f"module:{part.module}"]["module"].used
        if not used:
            continue  # the unused module is reported by resolve
        path = _part_path(g, part)
        report(g, f"the weights '{part.name}' are owned by no level", path,
               f"add '{part.name}' to a level's owns, or give the slowest level 'owns: rest'",
               "E-OWN")


def _part_path(g: nx.DiGraph, part) -> tuple:
    """Where the weights are declared: the chain block, the module, or the model."""
    if not part.module:
        return ("model",)
    block = part.name.split(".", 1)[1] if "." in part.name else ""
    spec = facts(g).spec.modules[part.module]
    if block and block in getattr(spec, "blocks", {}):
        return ("modules", part.module, "blocks", block)
    return ("modules", part.module)
