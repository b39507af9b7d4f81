"""A data-parallel run killed or stopped, then continued: on the same number of ranks bitwise,
on another number of ranks (DDP's whole checkpoints, FSDP2's sharded ones) to within float32
reduction order. Each job is two gloo processes on this machine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from nestgraph.api import sample
from nestgraph.errors import EXIT_RUNTIME
from nestgraph.runtime.train import checkpoint as ckpt
from nestgraph.testing import compile_build, data_parallel_worker, train_build

TINY = ["model.dim=16", "train.batch=4", "train.seq_len=32", "train.eval_batches=1",
        "train.eval_every=0", "data.max_bytes=60000", "train.threads=1",
        "levels.outer.rule.schedule=constant"]  # a run extended later keeps its schedule
ATOL = 2e-6


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(ckpt.latest_checkpoint(run))[0]


def _two_ranks(tmp_path: Path, build: Path, out: Path, overrides, steps, resume="never"):
    init = tmp_path / f"rendezvous-{uuid.uuid4().hex}"
    mp.spawn(data_parallel_worker, args=(2, str(init), str(build), str(out), overrides, steps,
                                         resume), nprocs=2, join=True)
    return Path((out / "run.txt").read_text())


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=ATOL, rtol=1e-5), name


@pytest.mark.parametrize("spec, parallel", [("transformer", "ddp"), ("cms", "fsdp")])
def test_a_run_of_two_ranks_resumes_on_one_and_on_two(tmp_path, spec, parallel):
    extra = ["train.seq_len=64", "levels.cms_mid.every=32 tokens",
             "levels.cms_slow.every=32 tokens"] \
        if spec == "cms" else []
    build = compile_build(tmp_path / "build", spec, TINY + extra)
    overrides = [f"train.parallel={parallel}"]
    whole = train_build(build, overrides, steps=6, out=tmp_path / "whole")
    half = _two_ranks(tmp_path, build, tmp_path / "half", overrides, 4)
    twin = tmp_path / "twin"
    shutil.copytree(half, twin)
    on_one = train_build(build, overrides, steps=6, out=tmp_path / "x", resume=str(half))
    on_two = _two_ranks(tmp_path, build, tmp_path / "y", overrides, 6, resume=str(twin))
    assert (on_one, on_two) == (half, twin)  # each continued its own folder
    _close(_weights(whole), _weights(on_one))
    _close(_weights(whole), _weights(on_two))
    # One process samples from the run's checkpoint, sharded or whole.
    assert isinstance(sample(on_two, "de", tokens=4), str)


def _rank_pid(marker: str, rank: int) -> int | None:
    """The pid of the job's process of `rank` (found by its environment), if it runs yet."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"NESTGRAPH_TEST_JOB={marker}".encode() in env and f"RANK={rank}".encode() in env:
            return int(entry.name)
    return None


def _latest_step(out: Path) -> int:
    for latest in out.glob("*/*/checkpoints/latest"):
        try:
            return int(latest.read_text().strip().split("-")[1])
        except (OSError, ValueError, IndexError):
            return 0
    return 0


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds ranks in /proc")
def test_killing_one_rank_stops_the_job_and_resume_continues_it_bitwise(tmp_path):
    build = compile_build(tmp_path / "build", "transformer",
                          TINY + ["train.checkpoint_every=10", "train.log_every=1000"])
    steps = 400
    marker = uuid.uuid4().hex
    env = dict(os.environ, NESTGRAPH_TEST_JOB=marker)
    command = [sys.executable, "-m", "nestgraph", "train", str(build), "--nproc-per-node",
               "2", "--steps", str(steps), "--out", str(tmp_path / "runs")]
    job = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True,
                           stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _latest_step(tmp_path / "runs") < 20 and time.monotonic() < deadline:
        assert job.poll() is None, job.stderr.read()
        time.sleep(0.01)
    victim = _rank_pid(marker, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    _, err = job.communicate(timeout=120)
    assert job.returncode == EXIT_RUNTIME, err
    assert "rank 1" in err and "SIGKILL" in err and "Traceback" not in err.split("error:")[-1]
    (run,) = (tmp_path / "runs" / "transformer").iterdir()
    stopped_at = ckpt.read_training_meta(ckpt.latest_checkpoint(run))["step"]
    assert 20 <= stopped_at < steps
    ckpt.load_checkpoint(ckpt.latest_checkpoint(run))  # intact: every file and its hash

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resuming {run} from step {stopped_at}" in again.stderr
    straight = _two_ranks(tmp_path, build, tmp_path / "straight", [], steps)
    resumed, reference = _weights(run), _weights(straight)
    assert all(torch.equal(resumed[n], reference[n]) for n in reference)


def test_plain_torchrun_trains_one_run_with_one_log(tmp_path):
    build = compile_build(tmp_path / "build", "transformer", TINY)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         "2", "-m", "nestgraph", "train", str(build), "--steps", "3", "--out",
         str(tmp_path / "runs")], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr
    (run,) = (tmp_path / "runs" / "transformer").iterdir()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]  # written once, by rank 0
    assert (run / "train.log").read_text().count("done: step 3") == 1
    assert done.stderr.count("done: step 3") == 1
    assert ckpt.read_training_meta(ckpt.latest_checkpoint(run))["train"]["batch"] == 4
