"""What a drawing is made from: the plan and the validated spec, taken from a build folder
(plan.json and spec.resolved.yaml, no torch needed) or compiled from a spec."""

from __future__ import annotations

import json
from pathlib import Path

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

    result = compile_spec(*read_document(name_or_path, overrides), stop_after="plan")
    return result.plan, result.spec


def load(arg: str, overrides: list[str]) -> tuple[dict, Spec]:
    """The plan and spec that `arg` (a build folder, or a spec) stands for."""
    if is_build(arg):
        return from_build(Path(arg))
    return from_spec(arg, overrides)
