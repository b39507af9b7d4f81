"""Which checkpoint a run continues from, and with which settings.

``--resume auto`` continues an interrupted run only when nothing that shapes its result has
changed: the same spec, the same train and data settings, the same data. It looks at this
program's runs newest first and takes the first unfinished one that matches; a run started
with other settings is never silently continued under new ones. ``--resume PATH`` continues
that run with the settings it was started with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nestgraph.errors import TrainingError, UsageProblem
from nestgraph.runtime import checkpoint as ckpt
from nestgraph.runtime.program import Program
from nestgraph.runtime.runs import run_dirs


@dataclass(frozen=True)
class ResumePoint:
    checkpoint: Path
    run_dir: Path
    cfg: dict
    data_cfg: dict


def find_resume(resume: str, out: Path, program: Program, cfg: dict, data_cfg: dict,
                note: Callable[[str], None]) -> ResumePoint | None:
    if resume == "never":
        return None
    if resume != "auto":
        return _explicit(Path(resume), program)
    for run in run_dirs(out, program.name):
        found = ckpt.latest_checkpoint(run)
        if found is None:
            continue
        try:
            meta = ckpt.read_meta(found)
        except ckpt.CheckpointError as err:
            note(f"not resuming {run}: {err.message}")
            continue
        same = (meta.get("spec_sha256") == program.sha256 and meta.get("train") == cfg
                and meta.get("data") == data_cfg)
        if same and int(meta["step"]) < cfg["steps"]:
            return ResumePoint(found, run, cfg, data_cfg)
    return None


def _explicit(target: Path, program: Program) -> ResumePoint:
    if (target / "checkpoints").is_dir():
        found = ckpt.latest_checkpoint(target)
    else:
        found = target if (target / "trainer_state.json").is_file() else None
    if found is None:
        raise UsageProblem(f"no checkpoint found in '{target}'",
                           "pass a run folder (runs/NAME/TIMESTAMP) or one of its "
                           "checkpoints/step-* folders")
    meta = ckpt.read_meta(found)
    if meta.get("spec_sha256") != program.sha256:
        raise TrainingError(f"the checkpoint '{found}' was written by another spec than this "
                            "build's", "train the build that run was made from "
                            "(its program.py is in the run folder)")
    run_dir = found.parent.parent if found.parent.name == "checkpoints" else found
    return ResumePoint(found, run_dir, meta["train"], meta["data"])
