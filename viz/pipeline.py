"""The pipeline itself as a picture: the front end, every compiler stage in order (grouped by
the folder that does its work), and the runtime that trains the program. Drawn from
`nestgraph.compiler.STAGES`, so the picture in docs/architecture.md cannot fall behind the
code (a golden test compares it).

    python -m nestgraph.viz.pipeline > docs/img/pipeline.dot
"""

from __future__ import annotations

from nestgraph.viz.dot import quote

FRONT = ("front end: nestgraph/spec/",
         [("text", "YAML or .ng text"),
          ("document", "read_document: plain data\npositions kept, overrides applied")])
RUNTIME = ("runtime: nestgraph/runtime/",
           [("runtime", "program.py wires layers/ and ops/\nengine.py reads, levels.py updates"),
            ("train", "train/loop.py: every level at its period\nruns/NAME/TIME/")])


def _folder(home: str) -> str:
    """``nestgraph.compiler.passes.schedule`` -> ``compiler/passes/``."""
    parts = home.split(".")[1:]
    if parts[-1] not in ("compiler", "passes", "spec", "schema"):
        parts = parts[:-1]
    return "/".join(parts) + "/"


def _label(text: str) -> str:
    """A quoted label whose lines are centred (DOT's ``\\n``)."""
    return "\\n".join(quote(line)[1:-1] for line in text.split("\n")).join('""')


def _cluster(index: int, title: str, nodes: list[tuple[str, str]]) -> list[str]:
    lines = [f"  subgraph cluster_{index} {{", f"    label={quote(title)};",
             '    style="rounded"; color="gray50"; fontname="Helvetica";']
    lines += [f"    {quote(node)} [label={_label(label)}];" for node, label in nodes]
    return lines + ["  }"]


def pipeline_dot() -> str:
    from nestgraph.compiler import STAGES

    groups: list[tuple[str, list[tuple[str, str]]]] = [FRONT]
    for stage in STAGES:
        title = (f"compiler: {_folder(stage.home)}" if ".compiler" in stage.home
                 else FRONT[0])
        label = f"{stage.name}\n{stage.makes}"
        if groups[-1][0] != title:
            groups.append((title, []))
        groups[-1][1].append((f"stage:{stage.name}", label))
    groups.append(RUNTIME)
    lines = ['digraph "pipeline" {', "  rankdir=TB;", '  node [shape=box, style="rounded", '
             'fontname="Helvetica", fontsize=10];', '  edge [color="gray40"];']
    for i, (title, nodes) in enumerate(groups):
        lines += _cluster(i, title, nodes)
    order = [node for _, nodes in groups for node, _ in nodes]
    lines += [f"  {quote(a)} -> {quote(b)};" for a, b in zip(order, order[1:], strict=False)]
    return "\n".join([*lines, "}"]) + "\n"


if __name__ == "__main__":
    print(pipeline_dot(), end="")
