"""Data parallelism on two gloo processes equals one process reading the whole batch.

Every shipped kind of level is covered: step levels (Transformer), in-context levels with
sequence and stream lifetimes (CMS, Hope), memory levels (Hope's self-modifying memories), a
step level that fires every other step (gradient accumulation under DDP's no_sync), under DDP
and under FSDP2. The stream level fires twice inside every step (every 32 of 64 tokens), so its
signal is averaged across ranks mid-read, not only at step boundaries.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from nestgraph.runtime.train import checkpoint as ckpt
from nestgraph.testing import (
    compile_build,
    data_parallel_worker,
    stream_steps_worker,
    train_build,
)

TINY = ["model.dim=16", "train.batch=4", "train.seq_len=64", "train.eval_batches=1",
        "train.eval_every=0", "train.checkpoint_every=0", "data.max_bytes=60000",
        "train.threads=1"]
# Every CMS level updates within a 64-token sequence; the stream level twice per step.
FAST_CMS = ["levels.cms_mid.every=32 tokens", "levels.cms_slow.every=32 tokens"]
SPECS = {"transformer": [], "cms": FAST_CMS, "hope": FAST_CMS,
         "transformer-accumulating": ["levels.outer.every=2 steps"]}
STEPS = 5
ATOL = 2e-6  # float32 sums taken in another order (two halves, then their mean)


def _build(tmp_path: Path, name: str) -> Path:
    spec = name.split("-")[0]
    return compile_build(tmp_path / "build", spec, TINY + SPECS[name])


def _two_ranks(worker, tmp_path: Path, *args) -> None:
    mp.spawn(worker, args=(2, str(tmp_path / "rendezvous"), *args), nprocs=2, join=True)


def _final(run: Path):
    weights, state, _ = ckpt.load_checkpoint(ckpt.latest_checkpoint(run))
    return weights, state["stream"]


def _assert_close(one: dict, two: dict, what: str) -> None:
    assert one.keys() == two.keys(), what
    for name in one:
        assert torch.allclose(one[name], two[name], atol=ATOL, rtol=1e-5), f"{what} {name}"


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
@pytest.mark.parametrize("name", list(SPECS))
def test_two_processes_with_half_the_batch_equal_one_with_all_of_it(tmp_path, name, parallel):
    if parallel == "fsdp" and name == "transformer-accumulating":
        pytest.skip("no_sync is DDP's; FSDP2 reduces every backward")
    build = _build(tmp_path, name)
    overrides = [f"train.parallel={parallel}"]
    one = train_build(build, overrides, steps=STEPS, out=tmp_path / "one")
    _two_ranks(data_parallel_worker, tmp_path, str(build), str(tmp_path / "two"), overrides,
               STEPS)
    two = Path((tmp_path / "two" / "run.txt").read_text())
    (w1, s1), (w2, s2) = _final(one), _final(two)
    _assert_close(w1, w2, "weight")
    _assert_close(s1["weights"], s2["weights"], "stream weight")
    _assert_close(s1["accum"], s2["accum"], "stream signal")


def test_a_stream_level_fires_where_one_process_fires_it_and_ranks_agree(tmp_path):
    build = _build(tmp_path, "cms")
    stream_steps_worker(0, 1, "", str(build), str(tmp_path / "one"), STEPS, "cms_slow")
    _two_ranks(stream_steps_worker, tmp_path, str(build), str(tmp_path / "two"), STEPS,
               "cms_slow")
    one = torch.load(f"{tmp_path / 'one'}.0", weights_only=True)
    rank0, rank1 = (torch.load(f"{tmp_path / 'two'}.{r}", weights_only=True) for r in (0, 1))
    assert one["fired"] == rank0["fired"] == rank1["fired"] == [2] * STEPS
    for table in ("weights", "accum"):
        for name, tensor in rank0["stream"][table].items():
            assert torch.equal(tensor, rank1["stream"][table][name]), (table, name)
        _assert_close(one["stream"][table], rank0["stream"][table], table)
    assert any(t.abs().max() > 0 for t in rank0["stream"]["weights"].values())
