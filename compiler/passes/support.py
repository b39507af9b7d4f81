"""Support: what a valid spec may say that this version cannot run yet.

Requires: a valid graph. Raises `CompileError` (exit code 4), naming the level and what is
missing. Validation accepts these, because the spec language is meant to outgrow the runtime.
"""

from __future__ import annotations

import networkx as nx

from nestgraph.compiler.ir import facts, levels, owned_by, owner_of, parts
from nestgraph.compiler.kinds.mlp import stepped
from nestgraph.errors import CompileError


def check_supported(g: nx.DiGraph) -> None:
    _check_nested_chains(g)
    _check_step_sizes(g)
    for lv in levels(g):
        produced = isinstance(getattr(lv.rule, "lr", 0), str)
        if produced and facts(g).kinds[lv.name] not in ("memory", "in_context"):
            raise CompileError(
                f"level '{lv.name}' takes its lr from '{lv.rule.lr}': module-produced rates drive "
                "memory levels and in-context levels in this version", pass_name="support",
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


def _check_step_sizes(g: nx.DiGraph) -> None:
    """A produced step size (``lr: cms.lr``) weights an in-context level's gradient through
    the blocks of the chain that makes it; the outer level learns its read-out through the
    update, so the level must keep that path (second order or truncated, per sequence)."""
    spec = facts(g).spec
    for lv in levels(g):
        lr = getattr(lv.rule, "lr", 0)
        if not isinstance(lr, str) or facts(g).kinds[lv.name] != "in_context":
            continue
        module = lr.split(".")[0]
        chain = spec.modules[module]
        blocks = {f"{module}.{b}" for b in stepped(chain)} if chain.type == "mlp_chain" else set()
        if not blocks:
            raise CompileError(f"level '{lv.name}' takes its lr from '{lr}', but module "
                               f"'{module}' makes no step sizes for in-context levels",
                               pass_name="support",
                               hint="give this level a number, or own blocks of an mlp_chain "
                                    "with step_size: true and take lr: CHAIN.lr")
        owned = owned_by(g, lv.name)
        if any(part.name not in blocks for part in owned):
            raise CompileError(f"level '{lv.name}': a step size from '{module}' weights the "
                               f"gradients of its blocks with step_size: true, and the level "
                               f"owns {', '.join(p.name for p in owned)}", pass_name="support",
                               hint="own only such blocks, or give the lr a number")
        if lv.meta == "first_order" or lv.lifetime != "sequence":
            raise CompileError(f"level '{lv.name}': its step sizes are learned through its "
                               "in-context update, which a first-order or stream level cuts",
                               pass_name="support",
                               hint="use meta: second_order (or truncated) and lifetime: "
                                    "sequence, or give the lr a number")
    for name, module in spec.modules.items():
        blocks = stepped(module) if module.type == "mlp_chain" else ()
        for block in blocks:
            owner = owner_of(g, f"{name}.{block}")
            rule = g.nodes[f"level:{owner}"]["level"].rule if owner else None
            if getattr(rule, "lr", None) != f"{name}.lr":
                taker = f"its level '{owner}' does not take it" if owner else "no level owns it"
                raise CompileError(f"block '{name}.{block}' makes a step size, but {taker}",
                                   pass_name="support",
                                   hint=f"write lr: {name}.lr in the rule of the level owning "
                                        f"'{name}.{block}', or drop step_size from block "
                                        f"'{block}'")
        owner = owner_of(g, f"{name}.rates") if blocks else None
        if owner is not None and facts(g).kinds[owner] != "step":
            # The forward pass never reads them: only a slower level, through the update.
            raise CompileError(f"level '{owner}' owns '{name}.rates', the read-outs of the "
                               "step sizes, which only a step level can train (through the "
                               "in-context update)", pass_name="support",
                               hint=f"leave '{name}.rates' to the outer level (owns: rest)")
