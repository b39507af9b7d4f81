"""Which checkpoint a run continues from, and with which settings.

``--resume auto`` continues an interrupted run only when nothing that shapes its result has
changed: the same spec, the same train and data settings, the same data. It looks at this
program's runs newest first and takes the first unfinished one that matches; a run started
with other settings is never silently continued under new ones. ``--resume PATH`` continues
that run with the settings it was started with. When ``auto`` starts a new run although an
unfinished one exists, it says which settings kept it from continuing the newest of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nestgraph.errors import TrainingError, UsageProblem
from nestgraph.escape import printable
from nestgraph.runtime.program import Program
from nestgraph.runtime.train import checkpoint as ckpt
from nestgraph.runtime.train.runs import run_dirs


@dataclass(frozen=True)
class ResumePoint:
    checkpoint: Path
    run_dir: Path
    cfg: dict
    data_cfg: dict


def find_resume(resume: str, out: Path, program: Program, cfg: dict, data_cfg: dict,
                note: Callable[[str], None], defaults: dict | None = None) -> ResumePoint | None:
    """The checkpoint to continue from, or None. `defaults` ({"train": ..., "data": ...}, the
    schema's) stand in for settings an older run did not record."""
    defaults = defaults or {}
    if resume == "never":
        return None
    if resume != "auto":
        return _explicit(Path(resume), program)
    skipped: tuple[Path, str] | None = None  # the newest unfinished run not continued, and why
    for run in run_dirs(out, program.name):
        found = ckpt.latest_checkpoint(run)
        if found is None:
            continue
        try:
            meta = ckpt.read_training_meta(found)
        except ckpt.CheckpointError as err:
            note(f"not resuming {printable(str(run))}: {err.message}")
            continue
        if meta["spec_sha256"] != program.sha256:
            reasons = ["it was trained from another version of the spec"]
        else:
            reasons = (settings_diff("train", meta["train"], cfg, defaults.get("train"))
                       + settings_diff("data", meta["data"], data_cfg, defaults.get("data")))
        if not reasons and meta["step"] < cfg["steps"]:
            return ResumePoint(found, run, cfg, data_cfg)
        unfinished = meta["step"] < meta["train"].get("steps", meta["steps"])
        if unfinished and reasons and skipped is None:
            skipped = (run, "; ".join(reasons))
    if skipped is not None:
        note(f"not resuming {printable(str(skipped[0]))}: {printable(skipped[1])} "
             f"(continue it with --resume {printable(str(skipped[0]))})")
    return None


def settings_diff(section: str, old: dict, new: dict, defaults: dict | None = None) -> list[str]:
    """``train.batch was 8, now 4`` for every setting that differs, as written.

    Settings are compared as the user wrote them (``threads: auto`` equals ``auto`` however
    many threads it picked), and a setting an older run did not record counts as its default
    (`defaults`, the schema's, given by the caller: the runtime does not read the schema; without
    them such a setting is not compared).
    """
    defaults = defaults or {}
    out = []
    for key in sorted(set(old) | set(new)):
        if key not in old and key not in defaults:
            continue
        was, now = old.get(key, defaults.get(key)), new.get(key, defaults.get(key))
        if was != now:
            out.append(f"{section}.{key} was {_shown(was)}, now {_shown(now)}")
    return out


def _shown(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _explicit(target: Path, program: Program) -> ResumePoint:
    if (target / "checkpoints").is_dir():
        found = ckpt.latest_checkpoint(target)
    else:
        found = target if (target / "trainer_state.json").is_file() else None
    if found is None:
        raise UsageProblem(f"no checkpoint found in '{target}'",
                           "pass a run folder (runs/NAME/TIMESTAMP) or one of its "
                           "checkpoints/step-* folders")
    meta = ckpt.read_training_meta(found)
    if meta["spec_sha256"] != program.sha256:
        raise TrainingError(f"the checkpoint '{found}' was written by another spec than this "
                            "build's", "train the build that run was made from "
                            "(its program.py is in the run folder)")
    run_dir = found.parent.parent if found.parent.name == "checkpoints" else found
    return ResumePoint(found, run_dir, meta["train"], meta["data"])
