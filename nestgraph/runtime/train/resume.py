"""A run's state on disk and back: which checkpoint a run continues from and with which
settings, writing a step's training state (`save`) and loading it again (`restore`).

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

import torch

from nestgraph.errors import TrainingError, UsageProblem
from nestgraph.escape import printable
from nestgraph.fsutil import atomic_write_text
from nestgraph.runtime.program import Program
from nestgraph.runtime.train import checkpoint as ckpt
from nestgraph.runtime.train.data import Corpus
from nestgraph.runtime.train.runs import read_metrics, run_dirs
from nestgraph.runtime.train.sharded import load_sharded, save_sharded
from nestgraph.runtime.train.step import TrainState, check_finite


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


def save(state: TrainState, run_dir: Path, cfg: dict, data_cfg: dict, corpus: Corpus,
         spec_sha: str) -> None:
    """Write the step's checkpoint: whole, by this process (one process or DDP's rank 0), or
    sharded, by every rank together (``train.parallel: fsdp``)."""
    check_finite(state, cfg)
    meta = {"step": state.step, "steps": cfg["steps"], "data_sha256": corpus.sha256,
            "spec_sha256": spec_sha, "train": cfg, "data": data_cfg}
    if cfg.get("parallel") == "fsdp":
        save_sharded(state.model, state.optimizers, state.step, run_dir,
                     {"stream": state.stream.state_dict(), "rng": ckpt.rng_state()}, meta,
                     cfg["keep_checkpoints"])
        return
    pending = {n: p.grad for n, p in state.model.named_parameters() if p.grad is not None}
    ckpt.save_checkpoint(
        run_dir, state.step,
        weights=state.model.state_dict(),
        state={"optimizers": {k: o.state_dict() for k, o in state.optimizers.items()},
               "stream": state.stream.state_dict(), "pending_grads": pending,
               "rng": ckpt.rng_state()},
        meta=meta, keep_last=cfg["keep_checkpoints"])


def restore(state: TrainState, path: Path, device: torch.device) -> None:
    meta = ckpt.read_training_meta(path)
    if meta.get("format") == "sharded":
        _restore_sharded(state, path, meta)
        return
    weights, saved, meta = ckpt.load_checkpoint(path)
    ckpt.check_training_meta(path, meta)
    for key in ("optimizers", "stream", "pending_grads", "rng"):
        if key not in saved:
            raise ckpt.CheckpointError(
                f"checkpoint '{printable(str(path))}' has an unreadable {ckpt.STATE_FILE}: "
                f"no '{key}' entry", "resume from an earlier checkpoint of the same run")
    try:
        state.model.load_state_dict(weights)
        for name, opt in state.optimizers.items():
            opt.load_state_dict(saved["optimizers"][name])
        state.stream.load_state_dict(saved["stream"])
        params = dict(state.model.named_parameters())
        for name, grad in saved["pending_grads"].items():
            params[name].grad = grad.to(device, params[name].dtype)
    except (KeyError, RuntimeError, ValueError) as err:
        raise ckpt.CheckpointError(f"the checkpoint '{path}' does not fit this program: {err}",
                                   "resume it with the build it was written by") from None
    state.stream.to(device)
    _restore_rng(path, saved)
    state.step = meta["step"]


def _restore_sharded(state: TrainState, path: Path, meta: dict) -> None:
    """A checkpoint of an FSDP2 run, into this job however many ranks it has."""
    saved = ckpt.load_state(path, meta)
    try:
        load_sharded(state.model, state.optimizers, path, list(saved.get("pending", [])))
        state.stream.load_state_dict(saved["stream"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise ckpt.CheckpointError(f"the checkpoint '{path}' does not fit this program: {err}",
                                   "resume it with the build it was written by") from None
    device = next(iter(state.model.parameters())).device
    state.stream.to(device)
    _restore_rng(path, saved)
    state.step = meta["step"]


def _restore_rng(path: Path, saved: dict) -> None:
    try:
        ckpt.set_rng_state(saved["rng"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise ckpt.CheckpointError(
            f"checkpoint '{printable(str(path))}' has an unreadable {ckpt.STATE_FILE}: its "
            f"random number generator state is broken ({err})",
            "resume from an earlier checkpoint of the same run") from None


def trim_metrics(path: Path, step: int) -> None:
    """Drop records written after the checkpoint we resume from, so no step appears twice."""
    if path.is_file():
        kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
