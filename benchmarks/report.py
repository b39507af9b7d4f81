"""What every benchmark writes beside its figures: the machine it ran on, and the JSON file."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch


def machine(**extra) -> dict:
    """CPU, threads, torch version and the load at the end (timings depend on all of them)."""
    return {"cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, **extra,
            "load_average_1min_at_end": os.getloadavg()[0]}


def write(out: str, report: dict) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
