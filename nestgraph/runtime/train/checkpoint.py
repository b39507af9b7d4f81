"""Crash-safe checkpoints: ``RUN/checkpoints/step-NNNNNNNN/``.

Each checkpoint folder holds three files:

* ``model.safetensors``: the weights (plain tensors, safe to load from anywhere);
* ``state.pt``: optimizer states, RNG states and other tensors the run needs to resume,
  restricted to what ``torch.load(weights_only=True)`` accepts, so loading never runs code;
* ``trainer_state.json``: the step, counters and other JSON-able facts, and the sha256 of
  the two other files (``files``). It is written last, and the hashes are checked on load, so
  a damaged weights or state file is refused instead of resuming with other numbers.

A run trained with FSDP2 (``train.parallel: fsdp``) writes ``shards/`` (every rank's part of
the weights, optimizer states and pending gradients, through ``torch.distributed.checkpoint``;
see `sharded.py`) in place of ``model.safetensors``, and ``format: sharded`` in
``trainer_state.json``.

A folder is written under a temporary name and renamed into place only when complete, and
``checkpoints/latest`` is replaced atomically afterwards: a crash at any moment leaves the
previous checkpoint or the new one, never a half-written folder under a ``step-*`` name.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from nestgraph.errors import TrainingError
from nestgraph.escape import printable
from nestgraph.fsutil import atomic_write_text, fsync_dir, fsync_file
from nestgraph.runtime.train.rng import rng_state, set_rng_state

__all__ = ["rng_state", "set_rng_state"]  # re-exported: a checkpoint holds them

WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"
SHARDS_DIR = "shards"
META_FILE = "trainer_state.json"
LATEST_FILE = "latest"
_STEP_DIR = re.compile(r"^step-(\d+)$")
# Leaf types torch.load(weights_only=True) accepts; anything else would save but not reload.
# Primitives are matched exactly: subclasses such as numpy's float64 or an IntEnum are not
# accepted by the loader.
_STATE_PRIMITIVES = frozenset({type(None), bool, int, float, complex, str, bytes})
_STATE_OBJECTS = (torch.Tensor, torch.dtype, torch.device)


class CheckpointError(TrainingError):
    """A checkpoint folder is missing files or holds files that cannot be read."""

    hint: str | None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint or "")
        self.hint = hint  # None when there is nothing useful to suggest


def checkpoint_name(step: int) -> str:
    """Zero-padded so that names sort in step order (up to step 99,999,999)."""
    return f"step-{step:08d}"


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    weights: dict[str, torch.Tensor],
    state: dict[str, Any],
    meta: dict[str, Any],
    keep_last: int | None = None,
) -> Path:
    """Write the checkpoint for `step` atomically and return its folder.

    If a checkpoint for the same step already exists (a resumed run saving the step it
    resumed from), it is replaced: the old folder is first renamed to a ``.tmp-*`` name, the
    new one renamed into place, and only then is the old one deleted. The step's name thus
    never points at a partly deleted folder; a crash between the two renames leaves no
    folder for that step, and `latest_checkpoint` falls back to the newest remaining one.

    With `keep_last`, all but the newest `keep_last` ``step-*`` folders are deleted
    afterwards (the one just written is always kept).
    """
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be at least 1, got {keep_last}")
    tmp = temporary_folder(run_dir, step)
    try:
        write_files(tmp, weights=weights, state=state, meta=_meta_with_step(meta, step))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish(tmp, step, keep_last)


def temporary_folder(run_dir: Path, step: int, pid: int | None = None) -> Path:
    """A new, empty folder to write the checkpoint of `step` into, beside the others."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{checkpoint_name(step)}-{pid or os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an earlier crash of a process with the same pid
    tmp.mkdir()
    return tmp


def publish(tmp: Path, step: int, keep_last: int | None) -> Path:
    """Rename a finished folder to its step's name, point ``latest`` at it, prune."""
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be at least 1, got {keep_last}")
    root, name = tmp.parent, checkpoint_name(step)
    final = root / name
    _move_into_place(tmp, final)
    atomic_write_text(root / LATEST_FILE, name + "\n")
    if keep_last is not None:
        _prune(root, keep=keep_last, protect=name)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The folder named by ``checkpoints/latest``, else the highest ``step-*`` folder."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return None
    pointed = _read_latest(root)
    if pointed is not None:
        return pointed
    folders = _step_folders(root)
    return folders[-1][1] if folders else None


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Return ``(weights, state, meta)``; tensors come back on the CPU.

    Loading to the CPU keeps a checkpoint usable on a machine without the GPU it was saved
    on; optimizers move their state onto the parameters' device in `load_state_dict`.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint '{path}' does not exist or is not a folder",
            "point --resume at a run folder or at one of its checkpoints/step-* folders",
        )
    sharded = (path / SHARDS_DIR).is_dir()
    needed = (STATE_FILE, META_FILE) + (() if sharded else (WEIGHTS_FILE,))
    missing = [f for f in needed if not (path / f).is_file()]
    if sharded and not (path / SHARDS_DIR / ".metadata").is_file():
        missing.append(f"{SHARDS_DIR}/.metadata")
    if missing:
        raise CheckpointError(
            f"checkpoint '{path}' is incomplete: missing {', '.join(missing)}",
            "resume from an earlier checkpoint of the same run",
        )
    meta = read_meta(path)
    if sharded:
        return _full_weights(path / SHARDS_DIR), load_state(path, meta), meta
    return _load_weights(path, meta), load_state(path, meta), meta


# --- writing ------------------------------------------------------------------------------


def write_files(
    folder: Path,
    *,
    weights: dict[str, torch.Tensor] | None,
    state: dict[str, Any],
    meta: dict[str, Any],
) -> None:
    """The weights (unless they are in ``shards/``), the state, and trainer_state.json last."""
    _check_state(state, "state")
    if weights is not None:
        # Cloning gives every tensor its own contiguous storage: safetensors refuses tensors
        # that share memory (tied embeddings) and non-contiguous views.
        plain = {key: value.detach().contiguous().clone() for key, value in weights.items()}
        safetensors.torch.save_file(plain, str(folder / WEIGHTS_FILE))
        fsync_file(folder / WEIGHTS_FILE)

    with open(folder / STATE_FILE, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    written = (STATE_FILE,) if weights is None else (WEIGHTS_FILE, STATE_FILE)
    meta = {**meta, "files": {name: _sha256((folder / name).read_bytes()) for name in written}}

    with open(folder / META_FILE, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(json.dumps(meta, sort_keys=True, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(folder)


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename the finished folder to its final name, replacing an existing one safely."""
    old = None
    if final.exists():
        old = final.with_name(f".tmp-old-{final.name}-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)  # atomic: the name never points at a half-deleted folder
    os.replace(tmp, final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _prune(root: Path, *, keep: int, protect: str) -> None:
    folders = _step_folders(root)
    doomed = [path for _, path in folders[:-keep] if path.name != protect]
    for path in doomed:
        # Rename first so a crash mid-delete leaves an ignored .tmp-* folder, not a broken
        # step-* folder that a later fallback could pick.
        trash = path.with_name(f".tmp-del-{path.name}-{os.getpid()}")
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
    if doomed:
        fsync_dir(root)


def _meta_with_step(meta: dict[str, Any], step: int) -> dict[str, Any]:
    """Make sure trainer_state.json records the step, and that it agrees with the folder."""
    if "step" in meta and meta["step"] != step:
        raise ValueError(f"meta['step'] is {meta['step']} but the checkpoint is for step {step}")
    return {**meta, "step": step}


def _check_state(value: Any, where: str) -> None:
    """Refuse at save time what could not be loaded back, instead of failing on resume."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where} has a key of type {type(key).__name__}: {key!r}")
            _check_state(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_state(item, f"{where}[{i}]")
    elif type(value) not in _STATE_PRIMITIVES and not isinstance(value, _STATE_OBJECTS):
        raise TypeError(
            f"{where} is a {type(value).__name__}; checkpoint state may only hold tensors, "
            "numbers, strings, None and dicts/lists/tuples of them"
        )


# --- reading ------------------------------------------------------------------------------


def _step_folders(root: Path) -> list[tuple[int, Path]]:
    """``step-*`` folders sorted by step; ``.tmp-*`` leftovers never match the pattern."""
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    found.sort()
    return found


def _read_latest(root: Path) -> Path | None:
    try:
        name = (root / LATEST_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    # Only accept a bare step-* name: the pointer must never lead outside this folder.
    if not _STEP_DIR.match(name):
        return None
    folder = root / name
    return folder if folder.is_dir() else None


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _verified_bytes(path: Path, file: str, meta: dict[str, Any]) -> bytes:
    """The file's bytes, checked against the hash trainer_state.json recorded for it.

    Checkpoints written before hashes were recorded have no ``files`` entry and are read
    unchecked.
    """
    try:
        raw = (path / file).read_bytes()
    except OSError as exc:
        raise _corrupt(path, file, exc) from exc
    if "files" not in meta:
        return raw
    recorded = meta["files"]
    expected = recorded.get(file) if isinstance(recorded, dict) else None
    if not isinstance(expected, str):
        raise _corrupt(path, META_FILE, ValueError(f"no sha256 recorded for {file}"))
    if _sha256(raw) != expected:
        raise CheckpointError(
            f"checkpoint '{path}' has a damaged {file}: its sha256 differs from the one "
            "recorded when it was written",
            "resume from an earlier checkpoint of the same run (pass its step-* folder)",
        )
    return raw


def _full_weights(shards: Path) -> dict[str, torch.Tensor]:
    """The whole weights of a sharded checkpoint, read by one process (sampling, evaluation)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as folder:
        whole = Path(folder) / "whole.pt"
        dcp_to_torch_save(shards, whole)
        return torch.load(whole, map_location="cpu", weights_only=True)["model"]


def _load_weights(path: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    raw = _verified_bytes(path, WEIGHTS_FILE, meta)
    try:
        return safetensors.torch.load(raw)
    except Exception as exc:  # safetensors raises its own error type for corrupt files
        raise _corrupt(path, WEIGHTS_FILE, exc) from exc


def load_state(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    raw = _verified_bytes(path, STATE_FILE, meta)
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise _corrupt(path, STATE_FILE, exc) from exc
    if not isinstance(state, dict):
        raise _corrupt(path, STATE_FILE, TypeError(f"holds a {type(state).__name__}"))
    return state


def read_meta(path: Path) -> dict[str, Any]:
    """A checkpoint's trainer_state.json, or CheckpointError if it is missing or broken."""
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(path, META_FILE, exc) from exc
    if not isinstance(meta, dict):
        raise _corrupt(path, META_FILE, TypeError(f"holds a {type(meta).__name__}"))
    if "step" in meta and (type(meta["step"]) is not int or meta["step"] < 0):
        raise _corrupt(path, META_FILE, ValueError(f"step is {meta['step']!r}, not a step count"))
    return meta


# What a training checkpoint's trainer_state.json must hold, and of which type.
_TRAINING_META = {"step": int, "steps": int, "data_sha256": str, "spec_sha256": str,
                  "train": dict, "data": dict}


def read_training_meta(path: Path) -> dict[str, Any]:
    """`read_meta` for a checkpoint written by the training loop: every entry it needs."""
    return check_training_meta(path, read_meta(path))


def check_training_meta(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """`meta`, read from checkpoint `path`, if it holds every entry the training loop needs."""
    for key, kind in _TRAINING_META.items():
        if key not in meta:
            raise _corrupt(path, META_FILE, KeyError(f"no '{key}' entry"))
        if type(meta[key]) is not kind:
            raise _corrupt(path, META_FILE, TypeError(
                f"'{key}' is {meta[key]!r}, not a {kind.__name__}"))
    return meta


def _corrupt(path: Path, file: str, exc: BaseException) -> CheckpointError:
    detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return CheckpointError(
        f"checkpoint '{printable(str(path))}' has an unreadable {file}: {detail}",
        "resume from an earlier checkpoint of the same run",
    )
