"""The training loop under faults: settings, broken checkpoints, bad data, locks, full disks."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

import nestgraph.runtime.train.loop as loop
from nestgraph.errors import EnvironmentProblem, TrainingError
from nestgraph.runtime.program import load_program
from nestgraph.runtime.train import checkpoint as ckpt
from nestgraph.runtime.train.checkpoint import CheckpointError
from nestgraph.runtime.train.loop import Interrupted, train
from nestgraph.runtime.train.progress import Reporter
from nestgraph.runtime.train.runs import LOCK_FILE, read_metrics
from nestgraph.runtime.train.threads import Threads, resolve_threads
from nestgraph.testing import compile_build

TINY = ("model.dim=16", "model.layers=1", "train.batch=2", "train.seq_len=32",
        "train.eval_batches=1", "train.eval_every=0", "train.log_every=1000",
        "levels.outer.rule.warmup=0")
TEXT = b"".join(b"line %d: the quick brown fox jumps over the lazy dog\n" % i
                for i in range(400))


class Notes(Reporter):
    """Keeps every note, so tests can read what a run said."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, text: str) -> None:
        self.lines.append(text)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return compile_build(tmp_path_factory.mktemp("tiny") / "build", "transformer", TINY)


@pytest.fixture
def program(build):
    return load_program(build)


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.txt"
    path.write_bytes(TEXT)
    return str(path)


def run(program, out, n, data, reporter=None, data_cfg=None, **kw):
    """Train `n` steps (the run's own count); `steps=` is train()'s explicit --steps."""
    cfg = dict(program.train, steps=n, **kw.pop("train", {}))
    data_cfg = data_cfg or dict(program.data, source=data)
    return train(program, cfg, data_cfg, out=out, reporter=reporter or Notes(), **kw)


def interrupted(program, out, steps, at, data, **kw):
    with pytest.raises(Interrupted) as stop:
        run(program, out, steps, data, interrupt_at=at, **kw)
    return stop.value.run_dir


# --- 1. threads ---------------------------------------------------------------------------


def test_auto_threads_take_the_free_cores(monkeypatch):
    import nestgraph.runtime.train.threads as threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "load_average", lambda: 1.9)
    assert resolve_threads("auto").count == 1  # a busy machine: one thread, not two
    monkeypatch.setattr(threads, "load_average", lambda: 0.1)
    assert resolve_threads("auto").count == 2
    monkeypatch.setattr(threads, "load_average", lambda: 40.0)
    assert resolve_threads("auto").count == 1
    assert resolve_threads(3).count == 3


def test_threads_are_applied_shown_and_recorded(tmp_path, program, data):
    before = torch.get_num_threads()
    notes = Notes()
    try:
        result = run(program, tmp_path / "runs", 1, data, reporter=notes, train={"threads": 1})
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert any("threads: 1" in line for line in notes.lines[:3])
    env = json.loads((result.run_dir / "env.json").read_text())
    assert env["threads"] == 1


def test_auto_threads_resolving_differently_still_resumes(tmp_path, program, data, monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(loop, "apply_threads", lambda s: Threads(2, "auto: test"))
        first = interrupted(program, tmp_path / "runs", 4, 2, data)
        monkeypatch.setattr(loop, "apply_threads", lambda s: Threads(1, "auto: test"))
        resumed = run(program, tmp_path / "runs", 4, data)
    finally:
        torch.set_num_threads(before)
    assert resumed.run_dir == first and resumed.resumed_from == 2
    env = json.loads((first / "env.json").read_text())
    assert env["threads"] == 2 and env["resumed"][0]["threads"] == 1


# --- 2. non-finite weights ----------------------------------------------------------------


def _poison_at(monkeypatch, step):
    real = loop.train_step

    def poisoned(state, *args):
        record = real(state, *args)
        if state.step == step:
            with torch.no_grad():
                next(state.model.parameters()).fill_(float("nan"))
        return record

    monkeypatch.setattr(loop, "train_step", poisoned)


def test_non_finite_weights_at_the_last_step_fail_and_keep_good_checkpoints(
        tmp_path, program, data, monkeypatch):
    _poison_at(monkeypatch, 2)
    with pytest.raises(TrainingError, match="at step 2") as err:
        run(program, tmp_path / "runs", 2, data, train={"checkpoint_every": 1})
    assert err.value.exit_code == 5
    run_dir = next((tmp_path / "runs" / "transformer").iterdir())
    kept = ckpt.latest_checkpoint(run_dir)
    assert kept.name == "step-00000001"
    weights, _, _ = ckpt.load_checkpoint(kept)
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_non_finite_held_out_loss_is_a_training_error(tmp_path, program, data, monkeypatch):
    monkeypatch.setattr(loop, "evaluate", lambda *a: float("nan"))
    with pytest.raises(TrainingError, match="held-out loss became nan at step 0"):
        run(program, tmp_path / "runs", 1, data)


def test_the_non_finite_hint_fits_the_precision():
    assert "precision=fp32" not in loop.non_finite_hint({"precision": "fp32"})
    assert "learning rates" in loop.non_finite_hint({"precision": "fp32"})
    assert "precision=fp32" in loop.non_finite_hint({"precision": "bf16"})


# --- 3. corrupt checkpoints ---------------------------------------------------------------


def _edit_meta(run_dir, change):
    path = ckpt.latest_checkpoint(run_dir) / ckpt.META_FILE
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("change", [lambda m: m.pop("data_sha256"),
                                    lambda m: m.update(step="x")])
def test_a_broken_trainer_state_is_a_checkpoint_error(tmp_path, program, data, change):
    run_dir = interrupted(program, tmp_path / "runs", 4, 2, data)
    _edit_meta(run_dir, change)
    with pytest.raises(CheckpointError, match="trainer_state.json"):
        run(program, tmp_path / "runs", 4, data, resume=str(run_dir))


def test_a_state_without_rng_is_a_checkpoint_error(tmp_path, program, data):
    run_dir = interrupted(program, tmp_path / "runs", 4, 2, data)
    folder = ckpt.latest_checkpoint(run_dir)
    weights, state, meta = ckpt.load_checkpoint(folder)
    del state["rng"]
    meta.pop("files")
    ckpt.save_checkpoint(run_dir, 2, weights=weights, state=state, meta=meta)
    with pytest.raises(CheckpointError, match="state.pt: no 'rng' entry"):
        run(program, tmp_path / "runs", 4, data, resume=str(run_dir))


def test_a_broken_line_inside_the_metrics_is_a_checkpoint_error(tmp_path, program, data):
    run_dir = interrupted(program, tmp_path / "runs", 4, 2, data)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:5]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(CheckpointError, match="metrics.jsonl' line 2"):
        run(program, tmp_path / "runs", 4, data, resume=str(run_dir))


def test_a_bit_flip_in_the_weights_stops_the_resume(tmp_path, program, data):
    run_dir = interrupted(program, tmp_path / "runs", 4, 2, data)
    weights = ckpt.latest_checkpoint(run_dir) / ckpt.WEIGHTS_FILE
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0x10
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged model.safetensors"):
        run(program, tmp_path / "runs", 4, data, resume=str(run_dir))


# --- 4. data sources ----------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_fifo_as_data_is_refused(tmp_path, program):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(TrainingError, match="named pipe"):
        run(program, tmp_path / "runs", 1, str(fifo))


def test_a_separate_heldout_source_is_what_is_evaluated(tmp_path, program, data, monkeypatch):
    held = tmp_path / "held.txt"
    held.write_bytes(b"zyxwvutsrqponmlkjihgfedcba\n" * 20)
    seen = []
    real = loop.evaluate

    def spy(state, program, cfg, corpus, device):
        seen.append(bytes(corpus.heldout.tolist()))
        return real(state, program, cfg, corpus, device)

    monkeypatch.setattr(loop, "evaluate", spy)
    data_cfg = dict(program.data, source=data, heldout_source=str(held))
    run(program, tmp_path / "runs", 1, data, data_cfg=data_cfg)
    assert seen and all(part == held.read_bytes() for part in seen)


def test_relative_data_paths_are_taken_from_the_base_folder(tmp_path, program, data):
    notes = Notes()
    data_cfg = dict(program.data, source="data.txt")
    result = run(program, tmp_path / "runs", 1, data, data_cfg=data_cfg, reporter=notes,
                 data_base=tmp_path)
    assert result.step == 1
    assert any(f"reading data: '{tmp_path / 'data.txt'}'" in line for line in notes.lines)


def test_a_vocabulary_smaller_than_the_bytes_is_a_data_error(tmp_path, data):
    small = load_program(compile_build(tmp_path / "b", "transformer", [*TINY, "model.vocab=100"]))
    with pytest.raises(TrainingError, match="model.vocab is 100") as err:
        run(small, tmp_path / "runs", 1, data)
    assert err.value.exit_code == 5
    assert not (tmp_path / "runs" / "transformer").exists()  # refused before a folder is made


# --- 5. the run lock ----------------------------------------------------------------------


def test_a_second_writer_of_a_run_folder_is_refused(tmp_path, program, data):
    run_dir = interrupted(program, tmp_path / "runs", 4, 2, data)
    (run_dir / LOCK_FILE).write_text(f"{os.getppid()}\n")  # a live process holds it
    with pytest.raises(TrainingError, match=f"being trained by process {os.getppid()}") as err:
        run(program, tmp_path / "runs", 4, data, resume=str(run_dir))
    assert err.value.exit_code == 5


def test_a_stale_lock_is_taken_over(tmp_path, program, data):
    run_dir = interrupted(program, tmp_path / "runs", 4, 2, data)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (run_dir / LOCK_FILE).write_text(f"{gone.pid}\n")
    result = run(program, tmp_path / "runs", 4, data, resume=str(run_dir))
    assert result.step == 4 and not (run_dir / LOCK_FILE).exists()


# --- 6. environment problems --------------------------------------------------------------


@pytest.mark.parametrize("error, words", [
    (OSError(errno.ENOSPC, "No space left on device"), "disk is full"),
    (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
])
def test_a_full_disk_or_a_read_only_folder_is_an_environment_problem(
        tmp_path, program, data, monkeypatch, error, words):
    def refuse(*args, **kwargs):
        error.filename = str(tmp_path / "runs" / "x")
        raise error

    monkeypatch.setattr(ckpt, "write_files", refuse)
    with pytest.raises(EnvironmentProblem, match=words) as err:
        run(program, tmp_path / "runs", 1, data)
    assert err.value.exit_code == 6 and "--out" in err.value.hint


def test_stale_temporary_checkpoint_folders_are_cleaned(tmp_path, program, data):
    run_dir = interrupted(program, tmp_path / "runs", 4, 2, data)
    stale = run_dir / "checkpoints" / ".tmp-step-00000003-999999"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    run(program, tmp_path / "runs", 4, data, resume=str(run_dir))
    assert not stale.exists()


# --- 7. resuming --------------------------------------------------------------------------


def test_explicit_resume_with_more_steps_extends_the_run(tmp_path, program, data):
    run_dir = interrupted(program, tmp_path / "runs", 4, 2, data)
    result = run(program, tmp_path / "runs", 4, data, resume=str(run_dir), steps=6)
    assert result.step == 6 and result.run_dir == run_dir
    steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert json.loads((run_dir / "run.json").read_text())["train"]["steps"] == 6


def test_auto_resume_says_which_settings_differed(tmp_path, program, data):
    run_dir = interrupted(program, tmp_path / "runs", 4, 2, data)
    notes = Notes()
    other = run(program, tmp_path / "runs", 4, data, reporter=notes, train={"batch": 1})
    assert other.run_dir != run_dir
    assert any(f"not resuming {run_dir}: train.batch was 2, now 1" in line
               for line in notes.lines)


# --- 8. Ctrl-C ----------------------------------------------------------------------------


def test_the_first_ctrl_c_is_acknowledged_at_once(capfd, tmp_path):
    with open(tmp_path / "train.log", "w") as log, loop._sigint_flag(log.fileno()) as flag:
        handler = signal.getsignal(signal.SIGINT)
        handler(signal.SIGINT, None)
        assert flag["stop"]
        assert "stopping after this step; Ctrl-C again to stop now" in capfd.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)
    assert "Ctrl-C again to stop now" in (tmp_path / "train.log").read_text()


# --- 9. throughput ------------------------------------------------------------------------


def test_throughput_leaves_out_evaluation_time(tmp_path, program, data, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(loop, "perf_counter", lambda: clock[0])
    real_step, real_eval = loop.train_step, loop.evaluate

    def step(*args):
        clock[0] += 1.0  # every step takes one second
        return real_step(*args)

    def slow_eval(*args):
        clock[0] += 100.0  # every evaluation a hundred
        return real_eval(*args)

    monkeypatch.setattr(loop, "train_step", step)
    monkeypatch.setattr(loop, "evaluate", slow_eval)
    result = run(program, tmp_path / "runs", 3, data, train={"eval_every": 1})
    speeds = [r["tokens_per_s"] for r in read_metrics(result.run_dir / "metrics.jsonl")
              if "tokens_per_s" in r]
    assert speeds == [2 * 32 / 1.0] * 3


# --- 10. loggers --------------------------------------------------------------------------


def test_csv_metrics_and_train_log(tmp_path, program, data):
    run_dir = interrupted(program, tmp_path / "runs", 4, 2, data)
    result = run(program, tmp_path / "runs", 4, data, resume=str(run_dir))
    import csv

    with open(result.run_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    losses = [int(r["step"]) for r in rows if r["loss"]]
    assert losses == [1, 2, 3, 4]  # the resumed session replaced nothing twice
    assert rows[0]["heldout_bpb"] and rows[1]["updates/outer"] == "1"
    log = (result.run_dir / "train.log").read_text()
    assert "resuming" in log and "done: step 4" in log and "threads:" in log


def test_tensorboard_missing_is_an_environment_problem(tmp_path, program, data, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(EnvironmentProblem, match="tensorboard") as err:
        run(program, tmp_path / "runs", 1, data,
            train={"loggers": ["jsonl", "tensorboard"]})
    assert "nestgraph[tensorboard]" in err.value.hint
    assert not (tmp_path / "runs" / "transformer").exists()


def test_tensorboard_logger_writes_events(tmp_path, program, data):
    pytest.importorskip("tensorboard")
    result = run(program, tmp_path / "runs", 1, data,
                 train={"loggers": ["jsonl", "tensorboard"]})
    assert any((result.run_dir / "tensorboard").iterdir())


# --- 11. update counts for the plot -------------------------------------------------------


def test_metrics_record_each_levels_updates_as_they_happened(tmp_path, program, data):
    result = run(program, tmp_path / "runs", 2, data)
    records = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "loss" in r]
    assert [r["updates/outer"] for r in records] == [1, 1]
    assert [r["updates/attention"] for r in records] == [32, 32]  # seq_len / 1 token


def test_generation_applies_the_thread_setting(program):
    from nestgraph.runtime.engine import init_stream
    from nestgraph.runtime.generate import sample

    before = torch.get_num_threads()
    model = program.build_model()
    try:
        torch.set_num_threads(2)
        out = sample(model, program.schedule, init_stream(model, program.schedule), b"ab",
                     tokens=2, seq_len=8, threads=1)
        assert torch.get_num_threads() == 1 and len(out) == 2
    finally:
        torch.set_num_threads(before)
