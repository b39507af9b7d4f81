"""How data moves through the parts of one module, for drawing: where it enters, where it
leaves, and the edges inside (a memory written with keys and values, then read at a query).

Parts are the ownable states the compiler lists in the plan (``selfmod``, ``selfmod.memory``...);
a module type not listed here is drawn as one box entered and left at its first part.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Flow:
    entries: list[str]
    exits: list[str]
    # (source part, target part, edge kind, label)
    inner: list[tuple[str, str, str, str]] = field(default_factory=list)


def module_flow(name: str, module, present: list[str]) -> Flow:
    """The flow through module `name` (its validated spec `module`), over the parts `present`."""
    kind = getattr(module, "type", "")
    have = set(present)
    if kind == "attention" and f"{name}.cache" in have:
        return Flow([name], [name], [(name, f"{name}.cache", "values", "k, v"),
                                     (f"{name}.cache", name, "data", "read")])
    if kind == "mlp_chain":
        return _chain(name, module, have)
    if kind == "neural_memory":
        return Flow([name], [name], [(name, f"{name}.memory", "values", "k, v, rates"),
                                     (f"{name}.memory", name, "data", "M(q)")])
    if kind == "memory_as_gate":
        return Flow([f"{name}.attn", name], [name], [
            (f"{name}.attn", f"{name}.cache", "values", "k, v"),
            (f"{name}.cache", f"{name}.attn", "data", "read"),
            (f"{name}.attn", name, "data", "gated"),
            (name, f"{name}.memory", "values", "k, v, rates"),
            (f"{name}.memory", name, "data", "M(q)")])
    if kind == "self_modifying_titans":
        return Flow([name], [name], [
            (name, f"{name}.projections", "data", "x"),
            (f"{name}.projections", f"{name}.memory", "values", "k, v, η, α"),
            (f"{name}.memory", name, "data", "o = M(q)")])
    first = present[0] if present else name
    return Flow([first], [first])


def _chain(name: str, module, have: set[str]) -> Flow:
    blocks = [f"{name}.{b}" for b in module.blocks if f"{name}.{b}" in have]
    if module.variant == "independent":
        mix = f"{name}.mix"
        if mix in have:
            return Flow(blocks, [mix], [(b, mix, "data", "") for b in blocks])
        return Flow(blocks, blocks)
    chain = [(a, b, "data", "") for a, b in zip(blocks, blocks[1:], strict=False)]
    return Flow(blocks[:1], blocks[-1:], chain)
