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

from dataclasses import dataclass, field

import networkx as nx

from nestgraph.compiler.kinds import Ownable, module_kind
from nestgraph.compiler.kinds.network import model_ownables
from nestgraph.errors import Diagnostic
from nestgraph.spec.schema import Level, Spec, context_source, period_of


@dataclass
class Lost:
    """Entries the schema rejected; later passes stay quiet about names that refer to them."""

    modules: set[str] = field(default_factory=set)
    levels: set[str] = field(default_factory=set)
    owns: set[str] = field(default_factory=set)  # what the rejected levels claimed to own
    model: bool = False  # the model section itself was unusable
    dropped: int = 0  # how many levels were rejected (named or not)


@dataclass
class Facts:
    """What the passes learn about the whole graph, one typed field each, under
    ``g.graph["facts"]`` (read it with `facts`). A field is None until the pass named beside it
    has run; `verify_ir` checks every field that is set against the nodes."""

    spec: Spec
    level_index: list[int]  # each level's position in the source document (for messages)
    lost: Lost = field(default_factory=Lost)  # salvage: what the schema rejected
    diagnostics: list[Diagnostic] = field(default_factory=list)  # every validation pass
    warnings: list[Diagnostic] = field(default_factory=list)  # every validation pass
    kinds: dict[str, str] | None = None  # classify: level -> step/in_context/memory/...
    tokens: dict[str, int] | None = None  # order: level -> its period in tokens
    order: list[str] | None = None  # order: levels fastest first
    init_owner: str | None = None  # contexts: the step level that trains initial states
    param_shapes: dict[str, tuple] | None = None  # shapes: parameter -> shape
    part_params: dict[str, int] | None = None  # shapes: ownable part -> parameter count
    cost: dict[str, dict] | None = None  # cost: level -> FLOPs, parameters, state
    memory: dict[str, int] | None = None  # cost: estimated training memory, in bytes


def facts(g: nx.DiGraph) -> Facts:
    return g.graph["facts"]


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
    g = nx.MultiDiGraph(name=spec.name, facts=Facts(spec, list(level_index)))
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
    order = facts(g).order
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
        if k == "owns" and owners.setdefault(v, u) != u and not facts(g).diagnostics:
            raise IRError(f"{v!r} owned twice ({owners[v]!r}, {u!r}) without a diagnostic")
    nest = nx.DiGraph(list(edges_of(g, "nest").edges()))
    if nest.number_of_edges():
        if not nx.is_directed_acyclic_graph(nest) or not nx.is_forest(nest.to_undirected()):
            raise IRError("the nest edges do not form a forest")
        if any(d > 1 for _, d in nest.out_degree()):
            raise IRError("a level is nested directly in two slower levels")
    _verify_facts(g)


def _verify_facts(g: nx.DiGraph) -> None:
    """The typed facts agree with the nodes (each checked once the pass that sets it has run)."""
    known = g.graph.get("facts")
    if not isinstance(known, Facts):
        raise IRError("the graph has no Facts record")
    if known.diagnostics:
        return  # an invalid spec: later facts may be partial, and are never used
    names = {lv.name for lv in levels(g)}
    if known.kinds is not None and set(known.kinds) != names:
        raise IRError("facts.kinds does not name every level exactly once")
    if known.order is not None:
        if known.tokens is None or sorted(known.order) != sorted(known.tokens):
            raise IRError("facts.order and facts.tokens name different levels")
        if [known.tokens[n] for n in known.order] != sorted(known.tokens.values()):
            raise IRError("facts.order is not fastest first")
    part_names = {p.name for p in parts(g)}
    if known.part_params is not None and not set(known.part_params) <= part_names:
        raise IRError("facts.part_params names a part the graph does not have")
    if known.cost is not None and not set(known.cost) <= names:
        raise IRError("facts.cost names a level the graph does not have")
