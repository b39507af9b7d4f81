"""How many CPU threads torch may use (``train.threads``).

torch's default is one thread per core. On a machine whose cores are busy with other work,
those threads wait on each other at every parallel region and a small model runs many times
slower than on one thread. ``auto`` therefore counts the cores this process may run on (its
CPU affinity, which container limits narrow) and subtracts the 1-minute load average, the
number of runnable processes already competing for them, keeping at least one thread and at
most one per core. A number is taken as given.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Threads:
    count: int
    how: str  # why this count, for the run header

    def as_record(self) -> dict:
        return {"threads": self.count, "threads_reason": self.how}


def usable_cores() -> int:
    """Cores this process may run on: its affinity mask where the system has one."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def load_average() -> float | None:
    """The 1-minute load average, or None where the system does not report one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def resolve_threads(setting: int | str) -> Threads:
    """The thread count for `setting` (``"auto"`` or a number of at least 1)."""
    if setting != "auto":
        return Threads(int(setting), "train.threads")
    cores, load = usable_cores(), load_average()
    # Processes of one data-parallel job on this machine share its cores.
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if local > 1:
        share = max(1, cores // local)
        return Threads(share, f"auto: {cores} cores shared by {local} processes")
    if load is None:
        return Threads(cores, f"auto: {cores} cores, no load average")
    free = math.floor(cores - load + 0.5)  # a core more than half free counts as free
    count = max(1, min(cores, free))
    return Threads(count, f"auto: {cores} cores, load {load:.2f}")


def apply_threads(setting: int | str) -> Threads:
    """Resolve `setting` and hand it to torch; returns what was chosen."""
    import torch

    chosen = resolve_threads(setting)
    torch.set_num_threads(chosen.count)
    return chosen
