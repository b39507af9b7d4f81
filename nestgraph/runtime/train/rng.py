"""The random number generators' states, as a checkpoint holds them (tensors and primitives
only, so that ``state.pt`` reloads under ``weights_only=True``)."""

from __future__ import annotations

import random
from typing import Any

import torch


def rng_state() -> dict[str, Any]:
    """Python's, torch's CPU and every CUDA device's generator states, as tensors.

    Python's state tuple becomes a tensor plus primitives, so the dict can go into
    ``state.pt`` and reload under ``weights_only=True``.
    """
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "python": {
            "version": version,
            "state": torch.tensor(internal, dtype=torch.int64),  # 625 words, each < 2**32
            "gauss_next": gauss_next,
        },
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if torch.cuda.is_available():
        state["cuda"] = [torch.cuda.get_rng_state(i) for i in range(torch.cuda.device_count())]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured.

    CUDA states are restored for the devices present in both the saved state and this
    machine; resuming a GPU run on the CPU simply leaves them out.
    """
    py = state["python"]
    internal = tuple(int(v) for v in py["state"].tolist())
    random.setstate((int(py["version"]), internal, py["gauss_next"]))
    torch.set_rng_state(state["torch"].to(device="cpu", dtype=torch.uint8))
    saved_cuda = state.get("cuda") or []
    if saved_cuda and torch.cuda.is_available():
        for i in range(min(len(saved_cuda), torch.cuda.device_count())):
            torch.cuda.set_rng_state(saved_cuda[i].to(device="cpu", dtype=torch.uint8), i)
