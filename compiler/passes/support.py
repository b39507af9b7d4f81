"""Support: what a valid spec may say that this version cannot run yet.

Requires: a valid graph. Raises `CompileError` (exit code 4), naming the level and what is
missing. Validation accepts these, because the spec language is meant to outgrow the runtime.
"""

from __future__ import annotations

import networkx as nx

from nestgraph.compiler.ir import facts, levels, owner_of, parts
from nestgraph.errors import CompileError


def check_supported(g: nx.DiGraph) -> None:
    _check_nested_chains(g)
    for lv in levels(g):
        if facts(g).kinds[lv.name] != "memory" and isinstance(getattr(lv.rule, "lr", 0), str):
            raise CompileError(
                f"level '{lv.name}' takes its lr from '{lv.rule.lr}': module-produced rates drive "
                "memory levels (rule titans) in this version", pass_name="support",
                hint="give this level a number")
        if facts(g).kinds[lv.name] == "memory" and (lv.lifetime != "sequence"
                                                      or lv.meta != "second_order"):
            raise CompileError(f"level '{lv.name}': a memory with lifetime '{lv.lifetime}' and "
                               f"meta '{lv.meta}' is valid but not run by this version",
                               pass_name="support",
                               hint="use lifetime: sequence and the default meta")
        if facts(g).kinds[lv.name] == "in_context" and lv.context != "tokens":
            raise CompileError(f"level '{lv.name}': an in-context level learns from 'tokens'",
                               pass_name="support", hint="write 'context: tokens'")
        if facts(g).kinds[lv.name] == "in_context" and lv.objective != "next_token":
            raise CompileError(f"level '{lv.name}': in-context objective '{lv.objective}' is "
                               "not supported", pass_name="support")


def _check_nested_chains(g: nx.DiGraph) -> None:
    """A nested chain's levels learn each other's initial states per sequence."""
    for name, module in facts(g).spec.modules.items():
        if getattr(module, "variant", "") != "nested":
            continue
        for part in (p for p in parts(g) if p.module == name):
            owner = owner_of(g, part.name)
            if owner is None:
                continue
            lv = g.nodes[f"level:{owner}"]["level"]
            if facts(g).kinds[owner] != "in_context" or lv.lifetime != "sequence":
                raise CompileError(
                    f"level '{owner}' owns '{part.name}' of the nested chain '{name}': a nested "
                    "chain's blocks are owned by in-context levels with lifetime sequence in "
                    "this version", pass_name="support",
                    hint="use variant: sequential, or lifetime: sequence on every block's level")
