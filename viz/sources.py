"""What a drawing is made from: the plan and the validated spec, taken from a build folder
(plan.json and spec.resolved.yaml) or compiled from a spec; neither needs torch.

A spec is compiled up to its schedule (torch-free), its weights are found by running the model
source against torch-free stand-ins (`nestgraph.viz.shapes`), and the cost and plan passes
finish the plan. Only when the stand-ins cannot tell does it compile with torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from nestgraph.compiler.ir import facts
from nestgraph.spec.schema import Spec


def is_build(path: str) -> bool:
    folder = Path(path)
    return folder.is_dir() and (folder / "plan.json").is_file()


def from_build(folder: Path) -> tuple[dict, Spec]:
    from nestgraph.spec.yaml_front import load_yaml

    plan = json.loads((folder / "plan.json").read_text(encoding="utf-8"))
    text = (folder / "spec.resolved.yaml").read_text(encoding="utf-8")
    data, _ = load_yaml(text, str(folder / "spec.resolved.yaml"))
    return plan, Spec.model_validate(data)


def from_spec(name_or_path: str, overrides: list[str]) -> tuple[dict, Spec]:
    from nestgraph.compiler import compile_spec
    from nestgraph.spec import read_document

    data, source = read_document(name_or_path, overrides)
    plan = _plan_without_torch(data, source)
    if plan is not None:
        return plan
    result = compile_spec(data, source, stop_after="plan")
    return result.plan, result.spec


def _plan_without_torch(data, source) -> tuple[dict, Spec] | None:
    """The plan compile_spec would make, with the weights found torch-free; None if unsure."""
    from nestgraph.compiler import compile_spec
    from nestgraph.compiler.codegen import model_source
    from nestgraph.compiler.ir import IRError, memory_levels
    from nestgraph.compiler.passes.cost import count_cost
    from nestgraph.compiler.passes.shapes import _count_parts
    from nestgraph.compiler.plan import make_plan
    from nestgraph.viz.shapes import param_shapes

    # The pipeline up to shapes; then the shapes stage's facts from the torch-free reader.
    result = compile_spec(data, source, stop_after="supported")
    g = result.graph
    shapes = param_shapes(model_source(result.spec, memory_levels(g)))
    if shapes is None:
        return None
    facts(g).param_shapes = shapes
    try:
        facts(g).part_params = _count_parts(g, shapes)
    except IRError:
        return None
    count_cost(g)
    return make_plan(g, result.resolved_yaml), result.spec


def load(arg: str, overrides: list[str]) -> tuple[dict, Spec]:
    """The plan and spec that `arg` (a build folder, or a spec) stands for."""
    if is_build(arg):
        return from_build(Path(arg))
    return from_spec(arg, overrides)
