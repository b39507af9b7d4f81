"""Run folders, their ``env.json`` and the ``metrics.jsonl`` log."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from nestgraph.escape import printable
from nestgraph.fsutil import atomic_write_text

__all__ = [
    "LOCK_FILE",
    "MetricsLog",
    "RunLock",
    "atomic_write_text",
    "latest_run_dir",
    "new_run_dir",
    "read_metrics",
    "remove_stale_temporaries",
    "write_env_json",
]

ENV_FILE = "env.json"
_RUN_DIR = re.compile(r"^(\d{8}-\d{6})(?:-(\d+))?$")


def new_run_dir(root: Path, name: str, *, now: datetime | None = None) -> Path:
    """Create and return ``root/name/YYYYmmdd-HHMMSS`` (UTC), adding ``-1``, ``-2``… if taken.

    Only rank 0 calls this. The other ranks of a distributed run receive the chosen path
    (for example through the ``NESTGRAPH_RUN_DIR`` environment variable); each rank inventing
    its own folder would split one run's files over several folders.
    """
    parent = Path(root) / name
    parent.mkdir(parents=True, exist_ok=True)
    stamp = _utc(now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    suffix = 0
    while True:
        candidate = parent / (stamp if suffix == 0 else f"{stamp}-{suffix}")
        try:
            # mkdir without exist_ok claims the name atomically, even against a second
            # process starting in the same second.
            candidate.mkdir()
        except FileExistsError:
            suffix += 1
            continue
        return candidate


def run_dirs(root: Path, name: str) -> list[Path]:
    """The run folders under ``root/name``, newest first.

    Folders are ordered by their timestamp name, and same-second collisions by their numeric
    suffix (so ``-10`` comes after ``-9``). Folders not named like runs are ignored.
    """
    parent = Path(root) / name
    if not parent.is_dir():
        return []
    runs = []
    for child in parent.iterdir():
        match = _RUN_DIR.match(child.name)
        if match and child.is_dir():
            runs.append(((match.group(1), int(match.group(2) or 0)), child))
    return [path for _, path in sorted(runs, reverse=True)]


def latest_run_dir(root: Path, name: str) -> Path | None:
    """The most recent run folder under ``root/name``, or ``None``."""
    found = run_dirs(root, name)
    return found[0] if found else None


def write_env_json(
    run_dir: Path, *, seed: int, command: list[str], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Record what produced a run (interpreter, torch, GPUs, seed, command) in ``env.json``."""
    cuda = torch.cuda.is_available()
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        "nestgraph": _nestgraph_version(),
        "seed": seed,
        "command": list(command),
        "world_size": _world_size(),
    }
    env.update(extra or {})
    atomic_write_text(Path(run_dir) / ENV_FILE, json.dumps(env, sort_keys=True, indent=2) + "\n")
    return env


class MetricsLog:
    """Append-only JSON-lines log; each record is flushed so a crash loses at most one line."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Append, so a resumed run continues the same file.
        self._handle = open(self.path, "a", encoding="utf-8", newline="\n")

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, sort_keys=True, default=_jsonable) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics log, skipping a last line cut short by a crash.

    A broken line anywhere else means the file was damaged, not cut short: that is a
    CheckpointError naming the file and the line, since resuming trims this log.
    """
    from nestgraph.runtime.train.checkpoint import CheckpointError

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise CheckpointError(f"'{printable(str(path))}' is not UTF-8 text: {err}",
                              _METRICS_HINT) from None
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                break  # a write interrupted mid-line; everything before it is intact
            raise CheckpointError(f"'{printable(str(path))}' line {i + 1} is not a JSON "
                                  f"record: {err.msg}", _METRICS_HINT) from None
        if not isinstance(record, dict) or not isinstance(record.get("step", 0), int):
            raise CheckpointError(f"'{printable(str(path))}' line {i + 1} is not a metrics "
                                  "record (an object with an integer step)", _METRICS_HINT)
        records.append(record)
    return records


_METRICS_HINT = "repair or delete that line, or start a new run with --resume never"


# --- the run lock -------------------------------------------------------------------------

LOCK_FILE = "train.lock"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one we may not signal counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


class RunLock:
    """``RUN/train.lock`` holds the pid of the one process training the run.

    Taken with an exclusive create, so of two processes starting at once exactly one wins. A
    lock whose process is gone (killed, crashed) is stale and taken over.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.held = False

    def acquire(self) -> RunLock:
        from nestgraph.errors import TrainingError

        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and holder != os.getpid() and pid_alive(holder):
                    raise TrainingError(
                        f"run folder '{printable(str(self.path.parent))}' is being trained by "
                        f"process {holder}",
                        f"wait for it to finish, stop it, or train another run "
                        f"(--resume never); if no such process trains it, delete {LOCK_FILE}"
                    ) from None
                # Stale: its process is gone. Remove it and race for it again.
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(f"{os.getpid()}\n")
            self.held = True
            return self
        raise TrainingError(f"could not take the lock '{printable(str(self.path))}'",
                            "another process keeps taking it; try again")

    def _holder(self) -> int | None:
        try:
            return int(self.path.read_text(encoding="utf-8").split()[0])
        except (OSError, ValueError, IndexError):
            return None  # unreadable or half written: treated as stale

    def release(self) -> None:
        if self.held and self._holder() == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete what an interrupted write left behind; call only while holding the run lock.

    Checkpoints are written to ``checkpoints/.tmp-*`` folders and small files to
    ``.NAME.tmp-PID`` files. With the lock held no other process is writing this run, so
    every such leftover belongs to a process that died mid-write.
    """
    import shutil

    removed = []
    root = Path(run_dir) / "checkpoints"
    candidates = [p for p in root.glob(".tmp-*")] if root.is_dir() else []
    candidates += [p for p in Path(run_dir).glob(".*.tmp-*") if p.is_file()]
    if root.is_dir():
        candidates += [p for p in root.glob(".*.tmp-*") if p.is_file()]
    for path in candidates:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken to be UTC already; aware ones are converted."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc)


def _nestgraph_version() -> str:
    try:
        return importlib.metadata.version("nestgraph")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _world_size() -> int | str:
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        return raw  # recorded as given: env.json describes the run, it does not judge it


def _jsonable(value: Any) -> Any:
    """Let records carry 0-d tensors, numpy scalars and paths without converting each one."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"metrics record holds a {type(value).__name__}, which is not JSON-able")
