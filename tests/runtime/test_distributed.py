"""The pending stream signal averaged across ranks, and one run folder for all ranks (two gloo processes)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.multiprocessing as mp

from nestgraph.runtime.stream import StreamState
from nestgraph.runtime.train.distributed import average_stream, current_rank
from nestgraph.testing import stream_average_worker


def test_two_ranks_average_stream_state_and_share_the_run_folder(tmp_path):
    out = str(tmp_path / "result")
    os.environ.pop("NESTGRAPH_RUN_DIR", None)
    mp.spawn(stream_average_worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    assert [Path(f"{out}.{r}").read_text() for r in (0, 1)] == ["ok", "ok"]


def test_single_process_is_a_no_op():
    stream = StreamState(weights={"w": torch.ones(2)})
    average_stream(stream)
    assert torch.equal(stream.weights["w"], torch.ones(2))
    assert current_rank().world_size >= 1
