"""A build folder's train and data settings with `train.*=` / `data.*=` overrides, re-validated
against the schema and the schedule before a run starts."""

from __future__ import annotations

from pathlib import Path

from nestgraph.compiler.buildfolder import absolute_data_overrides
from nestgraph.compiler.kinds.titans import segment_problem
from nestgraph.errors import CompileError, Diagnostic, SpecError


def _sections_model():
    from pydantic import BaseModel, ConfigDict

    from nestgraph.spec.schema import DataSpec, TrainSpec

    class Sections(BaseModel):
        model_config = ConfigDict(extra="forbid")
        train: TrainSpec
        data: DataSpec

    return Sections


def schema_defaults() -> dict:
    """The schema's train and data defaults, for settings an older run did not record."""
    from nestgraph.spec.schema import DataSpec, TrainSpec

    return {"train": TrainSpec().model_dump(mode="json"),
            "data": DataSpec().model_dump(mode="json")}


def train_config(program, overrides: list[str], *, steps: int | None, data: str | None,
                 resolved: Path | None = None):
    """The program's train/data sections with `train.*=`/`data.*=` overrides, re-validated.

    The overrides go through the same machinery as a spec's (positioned messages naming the
    override, with did-you-mean), applied to the build's resolved spec.
    """
    from pydantic import ValidationError

    from nestgraph.runtime.levels import needs_double_backward, schedule_problems
    from nestgraph.runtime.train.parallel import SHARDING_CONFLICT_HINT, sharding_conflict
    from nestgraph.runtime.train.step import COMPILE_CONFLICT, COMPILE_CONFLICT_HINT
    from nestgraph.spec.overrides import apply_overrides
    from nestgraph.spec.source import OVERRIDE_SEGMENT, SourceFile
    from nestgraph.spec.validation import diagnostics_from_pydantic
    from nestgraph.spec.yaml_front import load_yaml

    if resolved is not None and resolved.is_file():
        document, source = load_yaml(resolved.read_text(encoding="utf-8"), str(resolved))
    else:
        document, source = {}, SourceFile(filename="<build>", text="")
    document = dict(document, train=dict(program.train), data=dict(program.data))
    overrides = absolute_data_overrides(overrides)
    if data is not None:
        data = absolute_data_overrides([f"data.source={data}"])[0].partition("=")[2]
    problems = []
    for number, item in enumerate(overrides, 1):
        key = item.lstrip("~").partition("=")[0]
        if key.split(".", 1)[0] not in ("train", "data") or "." not in key:
            path = (OVERRIDE_SEGMENT, number)
            source.overrides[path] = (number, item)
            problems.append(Diagnostic(
                "a build folder is trained with train.KEY=VALUE and data.KEY=VALUE only",
                path, code="E-OVERRIDE", hint="model and level changes need a recompile: "
                "name the spec instead (nestgraph train SPEC ...)"))
    if problems:
        raise SpecError(problems, source)
    document = apply_overrides(document, source, overrides)
    # --steps and --data are shown as what was typed when their value is the problem.
    for path, value, typed in ((("train", "steps"), steps, f"--steps {steps}"),
                               (("data", "source"), data, f"--data {data}")):
        if value is not None:
            document[path[0]][path[1]] = value
            source.overrides[path] = (len(overrides) + 1, typed)
    sections = {"train": document["train"], "data": document["data"]}
    try:
        checked = _sections_model().model_validate(sections)
    except ValidationError as err:
        raise SpecError(diagnostics_from_pydantic(err, document), source) from None
    sections = checked.model_dump(mode="json")
    problems = [Diagnostic(p, hint="choose another train.seq_len, or recompile the spec "
                           "with it so the compiler checks the whole schedule")
                for p in schedule_problems(program.schedule, sections["train"]["seq_len"])]
    problems += _segment_problems(document, sections["train"]["seq_len"])
    if problems:
        raise SpecError(problems, source)
    if sections["train"]["compile"] == "on" and needs_double_backward(program.schedule):
        raise CompileError(COMPILE_CONFLICT, hint=COMPILE_CONFLICT_HINT)
    conflict = sharding_conflict(program.schedule) if sections["train"]["parallel"] == "fsdp" \
        else None
    if conflict:
        raise CompileError(conflict, hint=SHARDING_CONFLICT_HINT)
    return sections["train"], sections["data"]


def _segment_problems(document: dict, seq_len: int) -> list[Diagnostic]:
    """The compiler's MAC segment check, for a seq_len chosen at train time."""
    found = [(name, segment_problem(name, module.get("segment", 0), seq_len))
             for name, module in (document.get("modules") or {}).items()
             if isinstance(module, dict) and module.get("type") == "memory_as_context"]
    return [Diagnostic(f"with seq_len {seq_len}, {problem}", ("modules", name, "segment"),
                       hint="choose a longer train.seq_len, or recompile the spec with a "
                            "shorter segment")
            for name, problem in found if problem]
