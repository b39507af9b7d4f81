"""How data moves through the parts of one module, for drawing: where it enters, where it
leaves, and the edges inside (a memory written with keys and values, then read at a query).

Each module kind's record says (`ModuleKind.flow`); a kind that says nothing is drawn as one
box entered and left at its first part.
"""

from __future__ import annotations

from nestgraph.compiler.kinds import Flow, module_kind

__all__ = ["Flow", "module_flow"]


def module_flow(name: str, module, present: list[str]) -> Flow:
    """The flow through module `name` (its validated spec `module`), over the parts `present`."""
    return module_kind(module.type).flow(name, module, list(present))
