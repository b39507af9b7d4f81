"""The intermediate representation: a networkx graph of levels, modules and ownable states.

Nodes are strings ``level:NAME``, ``module:NAME``, ``part:NAME``; each carries a frozen record
under the attribute of its kind (``level``, ``module``, ``part``). It is a multigraph whose edge
key is the edge's ``kind``, so that two levels can be joined by both a flow and a nesting:

* ``has``: module -> part (the states a module contributes);
* ``owns``: level -> part (added by the ownership pass);
* ``context``: level -> level (the source level's output or gradients flow into the consumer);
* ``nest``: inner level -> the next slower level (added by the order pass).

`verify_ir` states the invariants every pass must keep; the pass runner calls it after each pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from nestgraph.compiler.kinds import Ownable, module_kind
from nestgraph.compiler.kinds.network import model_ownables
from nestgraph.spec.schema import Level, Spec, context_source, period_of


@dataclass(frozen=True)
class LevelInfo:
    name: str
    index: int  # position in the spec's `levels` list, for error locations
    period: int
    unit: str  # "token" | "step"
    lifetime: str
    context: str  # "tokens" | "corpus" | "output" | "gradients"
    source: str  # the level named by "output of X" / "gradients of X"; "" otherwise
    objective: str
    rule: object  # the validated rule model (GD, AdamW, ClosedForm)
    meta: str
    owns: tuple[str, ...]
    values: str = "given"  # a memory objective's values: "given" or "self" (NL Eq. 84)


@dataclass(frozen=True)
class ModuleInfo:
    name: str
    spec: object
    used: bool  # appears in model.block


def level_info(level: Level, index: int) -> LevelInfo:
    period, unit = period_of(level)
    context, source = context_source(level)
    return LevelInfo(level.name, index, period, unit, level.lifetime, context, source,
                     level.objective.type, level.rule, level.meta, tuple(level.owns),
                     getattr(level.objective, "values", "given"))


def build_ir(spec: Spec, level_index: list[int] | None = None) -> nx.DiGraph:
    """Spec -> graph. `level_index` maps each level to its position in the source document."""
    if level_index is None:
        level_index = list(range(len(spec.levels)))
    g = nx.MultiDiGraph(name=spec.name, spec=spec, diagnostics=[], warnings=[],
                        level_index=level_index)
    used = {b.module for b in spec.model.block}
    for name, mspec in spec.modules.items():
        g.add_node(f"module:{name}", module=ModuleInfo(name, mspec, name in used))
        for part in module_kind(mspec.type).ownables(name, mspec, spec.model):
            _add_part(g, part)
            g.add_edge(f"module:{name}", f"part:{part.name}", key="has", kind="has")
    for part in model_ownables(spec.model):
        _add_part(g, part)
    for i, level in enumerate(spec.levels):
        index = level_index[i]
        node = f"level:{level.name}"
        if node not in g:  # a duplicate name is reported by the resolve pass
            g.add_node(node, level=level_info(level, index))
    return g


def _add_part(g: nx.DiGraph, part: Ownable) -> None:
    g.add_node(f"part:{part.name}", part=part)


def levels(g: nx.DiGraph) -> list[LevelInfo]:
    """Levels in schedule order once the order pass has run, else in document order."""
    order = g.graph.get("order")
    if order is not None:
        return [g.nodes[f"level:{n}"]["level"] for n in order]
    found = [d["level"] for _, d in g.nodes(data=True) if "level" in d]
    return sorted(found, key=lambda lv: lv.index)


def parts(g: nx.DiGraph) -> list[Ownable]:
    return [d["part"] for _, d in g.nodes(data=True) if "part" in d]


def edges_of(g: nx.DiGraph, kind: str) -> nx.DiGraph:
    return nx.subgraph_view(g, filter_edge=lambda u, v, k: k == kind)


def owned_by(g: nx.DiGraph, level: str) -> list[Ownable]:
    node = f"level:{level}"
    return [g.nodes[v]["part"] for _, v, k in g.out_edges(node, data="kind") if k == "owns"]


def memory_levels(g: nx.DiGraph) -> dict[str, dict[str, LevelInfo]]:
    """Memory module name -> {memory ("memory", "projections") -> the level that owns it and so
    sets its chunk and rule}."""
    out: dict[str, dict[str, LevelInfo]] = {}
    for lv in levels(g):
        for part in owned_by(g, lv.name):
            if part.memory:
                out.setdefault(part.module, {})[part.name.split(".", 1)[1]] = lv
    return out


def owner_of(g: nx.DiGraph, part: str) -> str | None:
    for u, _, k in g.in_edges(f"part:{part}", data="kind"):
        if k == "owns":
            return u.split(":", 1)[1]
    return None


class IRError(AssertionError):
    """An invariant of the IR is broken: a bug in a pass, never the user's doing."""


def verify_ir(g: nx.DiGraph) -> None:
    for node, data in g.nodes(data=True):
        kind = node.split(":", 1)[0]
        if kind not in ("level", "module", "part") or kind not in data:
            raise IRError(f"node {node!r} has no '{kind}' record")
    for u, v, data in g.edges(data=True):
        kind = data.get("kind")
        expected = {"has": ("module", "part"), "owns": ("level", "part"),
                    "context": ("level", "level"), "nest": ("level", "level")}.get(kind)
        if expected is None or (u.split(":")[0], v.split(":")[0]) != expected:
            raise IRError(f"edge {u!r} -> {v!r} has a wrong kind {kind!r}")
    owners = {}
    for u, v, k in g.edges(data="kind"):
        if k == "owns" and owners.setdefault(v, u) != u and not g.graph["diagnostics"]:
            raise IRError(f"{v!r} owned twice ({owners[v]!r}, {u!r}) without a diagnostic")
    nest = nx.DiGraph(list(edges_of(g, "nest").edges()))
    if nest.number_of_edges():
        if not nx.is_directed_acyclic_graph(nest) or not nx.is_forest(nest.to_undirected()):
            raise IRError("the nest edges do not form a forest")
        if any(d > 1 for _, d in nest.out_degree()):
            raise IRError("a level is nested directly in two slower levels")
