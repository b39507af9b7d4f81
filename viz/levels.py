"""The levels view: the optimisation hierarchy as nested clusters, slowest outermost.

Each level is a cluster labelled with its name, period, lifetime, context flow, objective and
rule; inside it, a node for the level's update rule, the parts of the model it owns, and the
clusters of every faster level (the compiler's nesting order, faster levels first on ties).
Edges: the forward data flow through the parts, the teach signal each level learns from,
values a memory is written with, `updates` from a level to what it owns, the initial states
the outer level meta-learns, and context flows between levels.

Repeated layers are folded into one node per part marked ``× N layers``; ``depth=2`` draws
one node per layer, ``depth=0`` the levels alone.
"""

from __future__ import annotations

from nestgraph.compiler.kinds import rule_kind
from nestgraph.viz.diagram import (
    Cluster,
    Diagram,
    Edge,
    Node,
    escape,
    html_lines,
    level_colors,
    part_layers,
    part_shapes,
)
from nestgraph.viz.flow import module_flow

INPUT, LOSS = "input", "loss"

_OBJECTIVE_TEXT = {"l2": "‖M(k) − v‖²", "dot": "−⟨M(k), v⟩",
                   "next_token": "next-token loss", "nadaraya_watson": "Nadaraya–Watson (softmax)"}


def call_text(model) -> str:
    """A validated rule or objective as it would be written: ``gd(lr=0.01, clip=1.0)``."""
    fields = model.model_dump(mode="json", exclude_defaults=True)
    kind = fields.pop("type", getattr(model, "type", ""))
    args = ", ".join(f"{k}={v}" for k, v in fields.items())
    return f"{kind}({args})" if args else kind


def objective_text(level_spec) -> str:
    objective = level_spec.objective
    # An optimizer level's objective is over the gradients g it reads (NL §4.2-4.5): its
    # rule's record has the text.
    optimizer_text = rule_kind(level_spec.rule.type).objectives.get(objective.type)
    if optimizer_text is not None:
        return optimizer_text
    text = _OBJECTIVE_TEXT.get(objective.type, objective.type)
    if getattr(objective, "values", "given") == "self":
        text = text.replace("v", "M(v)", 1) if objective.type in ("l2", "dot") else text
    return text


class _Builder:
    def __init__(self, plan: dict, spec, depth: int) -> None:
        self.plan, self.spec, self.depth = plan, spec, depth
        self.parts = {p["name"]: p for p in plan["parts"]}
        self.levels = {lv["name"]: lv for lv in plan["levels"]}
        self.level_specs = {lv.name: lv for lv in spec.levels}
        self.color = {name: light for name, (light, _) in level_colors(plan).items()}
        # part -> the level that meta-learns its initial state (drawn in the part's label:
        # an edge from the outer level to every in-context part crosses the whole picture)
        self.init_by = {part: lv["name"] for lv in plan["levels"] for part in lv["initial_states"]}
        self.edges: list[Edge] = []

    # ------------------------------------------------------------------------------- nodes

    def copies(self, part: str) -> list[int | None]:
        """The layers a part is drawn for: one folded node, or one per layer."""
        n = part_layers(self.parts[part])
        return list(range(n)) if self.depth >= 2 and n > 1 else [None]

    def node_id(self, part: str, layer: int | None) -> str:
        return f"part:{part}" if layer is None else f"part:{part}@{layer}"

    def ids(self, part: str) -> list[str]:
        return [self.node_id(part, layer) for layer in self.copies(part)]

    def part_node(self, name: str, layer: int | None, fill: str) -> Node:
        part = self.parts[name]
        n = part_layers(part)
        params = part["params"] // max(n, 1) if n else part["params"]
        what = "state, no weights" if part["kind"] == "state" else f"{params:,} params"
        if layer is not None:
            lines = [f"layer {layer}", part_shapes(part), what]
        elif n > 1:
            lines = [part_shapes(part), f"{what} × {n} layers"]
        else:
            lines = [part_shapes(part), what]
        if name in self.init_by:
            lines.append(f"initial state learned by {self.init_by[name]}")
        label = html_lines(name, *lines)
        text = "\n".join([name, *(x for x in lines if x)])
        return Node(self.node_id(name, layer), label, fill=fill, text=text)

    def level_node(self, name: str) -> Node:
        rule = self.level_specs[name].rule
        label = f"<b>{escape(rule.type)}</b>"
        return Node(f"level:{name}", label, shape="cds", fill=self.color[name],
                    style="filled", text=rule.type)

    # ---------------------------------------------------------------------------- clusters

    def cluster(self, level: dict, inner: list[Cluster]) -> Cluster:
        name = level["name"]
        spec = self.level_specs[name]
        lines = [f"every {level['every']} · lifetime {level['lifetime']}",
                 f"on {level['context']}", f"minimise {objective_text(spec)}",
                 f"by {call_text(spec.rule)}"]
        nodes = [self.level_node(name)]
        if self.depth >= 1:
            for part in level["owns"]:
                nodes += [self.part_node(part, layer, self.color[name])
                          for layer in self.copies(part)]
        return Cluster(f"cluster_level_{name}", html_lines(name, *lines),
                       "\n".join([name, *lines]), fill=self.color[name], nodes=nodes,
                       clusters=inner)

    def nested(self) -> list[Cluster]:
        inner: list[Cluster] = []
        for level in self.plan["levels"]:  # fastest first: each wraps the ones before it
            inner = [self.cluster(level, inner)]
        return inner

    # ------------------------------------------------------------------------------- edges

    def edge(self, source: str, target: str, kind: str, label: str = "", **kw) -> None:
        self.edges.append(Edge(source, target, kind, label, **kw))

    def level_edges(self) -> None:
        for lv in self.plan["levels"]:
            name, spec = lv["name"], self.level_specs[lv["name"]]
            me = f"level:{name}"
            if lv["context"].startswith(("gradients of ", "output of ")):
                word, _, source = lv["context"].split(" ", 2)
                self.edge(f"level:{source}", me, "context", word)
                if lv["kind"] == "optimizer":  # its read-out is the update of what it reads
                    self.edge(me, f"level:{source}", "values", "read-out", constraint=False)
            if spec.objective.type == "next_token":
                # drawn from the loss, laid out below the levels (an unconstrained edge here
                # can make Graphviz fail to route it between nested clusters)
                self.edge(LOSS, me, "teach", "∇ loss", upward=True)
            if self.depth < 1:
                continue
            for part in lv["owns"]:
                for node in self.ids(part):
                    self.edge(me, node, "updates")
                if spec.objective.type in ("l2", "dot"):
                    self.edge(self.ids(part)[0], me, "teach", objective_text(spec),
                              constraint=False)
                if getattr(spec.objective, "values", "given") == "self":
                    for node in self.ids(part):
                        self.edge(node, node, "values", "M(v)", constraint=False)

    def data_edges(self) -> None:
        """input -> embedding -> each block's parts, layer by layer -> loss."""
        if self.depth < 1:
            return
        spec = self.spec
        owned_by_module: dict[str, list[str]] = {}
        for part in self.plan["parts"]:
            owned_by_module.setdefault(part["module"], []).append(part["name"])
        repeated = _first_layer_part(self.plan)
        first_layer = self.copies(repeated) if repeated else [None]
        prev = self.ids("embedding")[:1] if "embedding" in self.parts else [INPUT]
        if prev != [INPUT]:
            self.edge(INPUT, prev[0], "data", "bytes")
        entry_of_first = None
        for layer in first_layer:
            for entry in spec.model.block:
                module = spec.modules[entry.module]
                present = owned_by_module.get(entry.module, [])
                flow = module_flow(entry.module, module, present)
                at = {p: self.node_id(p, layer if len(self.copies(p)) > 1 else None)
                      for p in present}
                entries = [at[p] for p in flow.entries if p in at]
                for source in prev:
                    for target in entries:
                        self.edge(source, target, "data")
                if entry_of_first is None:
                    entry_of_first = entries
                for a, b, kind, label in flow.inner:
                    if a in at and b in at:
                        self.edge(at[a], at[b], kind, label)
                prev = [at[p] for p in flow.exits if p in at] or prev
        layers = spec.model.layers
        if layers > 1 and len(first_layer) == 1 and entry_of_first:
            for source in prev:
                self.edge(source, entry_of_first[0], "data", f"next layer (× {layers})",
                          constraint=False)
        head = "unembedding" if "unembedding" in self.parts else None
        if head is not None:
            for source in prev:
                self.edge(source, self.ids(head)[0], "data")
            prev = self.ids(head)[:1]
        for source in prev:
            self.edge(source, LOSS, "data", "logits")


def _first_layer_part(plan: dict) -> str | None:
    for part in plan["parts"]:
        if part_layers(part) > 1:
            return part["name"]
    return None


def levels_diagram(plan: dict, spec, depth: int = 1, direction: str = "TB") -> Diagram:
    b = _Builder(plan, spec, depth)
    clusters = b.nested()
    b.level_edges()
    b.data_edges()
    totals = plan["totals"]
    title = (f"<b>{escape(plan['name'])}</b>: {len(plan['levels'])} levels, slowest outermost"
             f" · {totals['params']:,} weights")
    nodes = [Node(INPUT, "<b>input bytes</b>", shape="ellipse", style="filled",
                  fill="#ffffff", text="input bytes"),
             Node(LOSS, "<b>next-token loss</b>", shape="ellipse", style="filled",
                  fill="#fdedec", text="next-token loss")]
    kinds = [k for k in ("data", "teach", "values", "updates", "init", "context")
             if any(e.kind == k for e in b.edges)]
    return Diagram("levels", title, direction, nodes, clusters, b.edges, kinds)
