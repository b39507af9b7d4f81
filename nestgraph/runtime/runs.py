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

from nestgraph.runtime.fsutil import atomic_write_text

__all__ = [
    "MetricsLog",
    "atomic_write_text",
    "latest_run_dir",
    "new_run_dir",
    "read_metrics",
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
    """All records of a metrics log, skipping a last line cut short by a crash."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # a write interrupted mid-line; everything before it is intact
            raise
    return records


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
