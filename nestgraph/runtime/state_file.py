"""Stream state in a file of its own: save, load and fork what a run's stream levels learned.

The file is safetensors (no code runs on loading): the tensors ``weights/NAME``, ``accum/NAME``
and ``velocity/NAME`` of a `StreamState`, with its position and the spec's name in the header's
metadata. It is written atomically (a temporary file in the same folder, then a rename), so a
crash leaves the old file or the new one, never a mix.
"""

from __future__ import annotations

from pathlib import Path

import safetensors
import safetensors.torch

from nestgraph.errors import UsageProblem
from nestgraph.escape import printable
from nestgraph.fsutil import atomic_write_bytes
from nestgraph.runtime.stream import StreamState
from nestgraph.runtime.train.checkpoint import CheckpointError

FORMAT = "nestgraph-stream-state"
VERSION = "1"
_TABLES = ("weights", "accum", "velocity")


def save_state(path: Path, stream: StreamState, spec_name: str) -> None:
    """Write `stream` to `path` atomically."""
    path = Path(path)
    tensors = {f"{table}/{name}": t.detach().contiguous().clone().cpu()
               for table in _TABLES for name, t in getattr(stream, table).items()}
    meta = {"format": FORMAT, "version": VERSION, "position": str(stream.position),
            "spec": spec_name}
    atomic_write_bytes(path, safetensors.torch.save(tensors, metadata=meta))


def load_state(path: Path, like: StreamState) -> StreamState:
    """The stream state in `path`, checked against `like` (the run's own: same weights, same
    shapes), on `like`'s devices and dtypes."""
    path = Path(path)
    shown = printable(str(path))
    if not path.is_file():
        raise UsageProblem(f"stream state file '{shown}' does not exist",
                           "write one with `nestgraph generate RUN --save-state FILE`")
    try:
        with safetensors.safe_open(str(path), "pt") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own and OS errors for a broken file
        raise CheckpointError(f"stream state file '{shown}' is unreadable: {err}",
                              "save it again with --save-state") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"'{shown}' is not a nestgraph stream state file",
                              "pass a file written by --save-state")
    state = StreamState(int(meta.get("position", 0)))
    for key, tensor in tensors.items():
        table, _, name = key.partition("/")
        getattr(state, table)[name] = tensor
    _check_fits(state, like, shown, meta.get("spec", "?"))
    for table in _TABLES:
        mine = getattr(like, table)
        for name, t in getattr(state, table).items():
            ref = mine.get(name, like.weights[name])
            getattr(state, table)[name] = t.to(ref.device, ref.dtype)
    return state


def _check_fits(state: StreamState, like: StreamState, shown: str, spec: str) -> None:
    want = {n: tuple(t.shape) for n, t in like.weights.items()}
    have = {n: tuple(t.shape) for n, t in state.weights.items()}
    if want != have or set(state.accum) != set(want) or not set(state.velocity) <= set(want):
        missing = sorted(set(want) - set(have))
        extra = sorted(set(have) - set(want))
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}" if extra
                  else "weights of other shapes")
        raise CheckpointError(
            f"stream state file '{shown}' (spec '{printable(spec)}') does not fit this run: "
            f"{printable(detail)}", "use a state saved from a run of the same spec and sizes")
