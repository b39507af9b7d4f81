"""The modules view: the network as the data flows through it, each module a table of its parts
with their shapes, parameter counts and the level that owns each (in that level's colour).

The layer is one cluster marked ``× N`` (``depth=2``: one cluster per layer). A key at the
side gives each level's colour and period.
"""

from __future__ import annotations

from nestgraph.viz.diagram import (
    Cluster,
    Diagram,
    Edge,
    Node,
    escape,
    level_colors,
    part_layers,
    part_shapes,
)

INPUT, LOSS = "input", "loss"


class _Builder:
    def __init__(self, plan: dict, spec, depth: int) -> None:
        self.plan, self.spec, self.depth = plan, spec, depth
        self.colors = level_colors(plan)
        self.owner = {part: lv["name"] for lv in plan["levels"] for part in lv["owns"]}
        self.by_module: dict[str, list[dict]] = {}
        for part in plan["parts"]:
            self.by_module.setdefault(part["module"], []).append(part)
        self.parts = {p["name"]: p for p in plan["parts"]}

    def row(self, part: dict) -> str:
        owner = self.owner.get(part["name"], "")
        light = self.colors[owner][0] if owner else "#ffffff"
        n = part_layers(part)
        params = part["params"] // n if n else part["params"]
        size = "state" if part["kind"] == "state" else f"{params:,}"
        return (f'<tr><td align="left" bgcolor="{light}">{escape(part["name"])}</td>'
                f'<td align="left">{escape(part_shapes(part, 2))}</td>'
                f'<td align="right">{size}</td>'
                f'<td align="left" bgcolor="{light}">{escape(owner)}</td></tr>')

    def table(self, title: str, parts: list[dict]) -> str:
        head = f'<tr><td colspan="4" align="left"><b>{escape(title)}</b></td></tr>'
        return ('<table border="0" cellborder="1" cellspacing="0" cellpadding="3">' + head
                + "".join(self.row(p) for p in parts) + "</table>")

    def module_node(self, name: str, layer: int | None) -> Node:
        kind = getattr(self.spec.modules[name], "type", "")
        parts = self.by_module.get(name, [])
        node_id = f"module:{name}" if layer is None else f"module:{name}@{layer}"
        text = "\n".join([f"{name} ({kind})", *(p["name"] for p in parts)])
        return Node(node_id, self.table(f"{name} · {kind}", parts), shape="plaintext",
                    style="", text=text)

    def single(self, part_name: str, node_id: str) -> Node | None:
        part = self.parts.get(part_name)
        if part is None:
            return None
        return Node(node_id, self.table(part_name, [part]), shape="plaintext", style="",
                    text=part_name)


def _key(plan: dict, colors: dict[str, tuple[str, str]]) -> Node:
    rows = ['<tr><td colspan="2" align="left"><b>levels</b> (owner colour)</td></tr>']
    rows += [f'<tr><td bgcolor="{colors[lv["name"]][0]}">{escape(lv["name"])}</td>'
             f'<td align="left">every {escape(lv["every"])}</td></tr>' for lv in plan["levels"]]
    table = ('<table border="0" cellborder="1" cellspacing="0" cellpadding="3">' + "".join(rows)
             + "</table>")
    return Node("key", table, shape="plaintext", style="", text="levels")


def modules_diagram(plan: dict, spec, depth: int = 1, direction: str = "TB") -> Diagram:
    b = _Builder(plan, spec, depth)
    layers = spec.model.layers
    unfold = depth >= 2 and layers > 1
    nodes = [Node(INPUT, "<b>input bytes</b>", shape="ellipse", style="filled", fill="#ffffff",
                  text="input bytes")]
    edges: list[Edge] = []
    prev = INPUT
    embed = b.single("embedding", "part:embedding")
    if embed is not None:
        nodes.append(embed)
        edges.append(Edge(INPUT, embed.id, "data"))
        prev = embed.id
    clusters = []
    for layer in range(layers) if unfold else [None]:
        label = f"<b>layer {layer}</b>" if unfold else f"<b>layer × {layers}</b>"
        cluster = Cluster(f"cluster_layer_{layer if unfold else 'all'}", label,
                          label.replace("<b>", "").replace("</b>", ""), fill="#fbfcfc")
        for entry in spec.model.block:
            node = b.module_node(entry.module, layer)
            if node.id not in {n.id for n in cluster.nodes}:
                cluster.nodes.append(node)
            edges.append(Edge(prev, node.id, "data", "" if entry.residual else "no residual"))
            prev = node.id
        clusters.append(cluster)
    if not unfold and layers > 1:
        first = clusters[0].nodes[0].id
        edges.append(Edge(prev, first, "data", f"next layer (× {layers})", constraint=False))
    for name in ("norms", "unembedding"):
        node = b.single(name, f"part:{name}")
        if node is not None:
            nodes.append(node)
    edges.append(Edge(prev, LOSS, "data", "final norm, head"))
    nodes += [Node(LOSS, "<b>next-token loss</b>", shape="ellipse", style="filled",
                   fill="#fdedec", text="next-token loss"), _key(plan, b.colors)]
    title = (f"<b>{escape(plan['name'])}</b>: modules, with the level that owns each part"
             f" · {plan['totals']['params']:,} weights")
    return Diagram("modules", title, direction, nodes, clusters, edges, [])
