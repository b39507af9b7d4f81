"""Training runs end to end: learning, checkpoints, bitwise resume, interruption."""

from __future__ import annotations

import json

import pytest
import torch

from nestgraph.errors import TrainingError
from nestgraph.runtime.program import load_program
from nestgraph.runtime.train import checkpoint as ckpt
from nestgraph.runtime.train.loop import Interrupted, train
from nestgraph.runtime.train.progress import SilentReporter
from nestgraph.runtime.train.runs import read_metrics
from nestgraph.testing import SMALL_CMS, compile_build


def small_program(tmp_path, extra=()):
    return load_program(compile_build(tmp_path / "build", "cms", [*SMALL_CMS, *extra]))


def run(program, out, steps, **kw):
    cfg = dict(program.train, steps=steps)
    return train(program, cfg, program.data, out=out, reporter=SilentReporter(), **kw)


def final_state(run_dir):
    weights, state, meta = ckpt.load_checkpoint(ckpt.latest_checkpoint(run_dir))
    return weights, state["stream"], meta


@pytest.mark.parametrize("order", ["random", "stream"])
def test_interrupted_run_resumes_bitwise(tmp_path, order):
    program = small_program(tmp_path, [f"data.order={order}"])
    whole = run(program, tmp_path / "a", steps=12)
    with pytest.raises(Interrupted) as stop:
        run(program, tmp_path / "b", steps=12, interrupt_at=6)
    assert stop.value.step == 6 and stop.value.exit_code == 130
    resumed = run(program, tmp_path / "b", steps=12, resume="auto")
    assert resumed.resumed_from == 6 and resumed.run_dir == stop.value.run_dir
    (w1, s1, m1), (w2, s2, m2) = final_state(whole.run_dir), final_state(resumed.run_dir)
    assert m1["step"] == m2["step"] == 12
    assert w1.keys() == w2.keys()
    for name in w1:
        assert torch.equal(w1[name], w2[name]), name
    assert s1["position"] == s2["position"] == 12 * 64
    for name in s1["weights"]:
        assert torch.equal(s1["weights"][name], s2["weights"][name]), name
    # The stream level fired (every 128 tokens = every 2 steps), so equality is not vacuous.
    # The stream holds each weight's in-context change Δ (it starts at 0).
    assert any(bool(s1["weights"][n].abs().sum() > 0) for n in s1["weights"])
    steps = [r["step"] for r in read_metrics(resumed.run_dir / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, 13))  # no step logged twice across the interruption


def test_auto_resume_starts_fresh_when_the_last_run_finished(tmp_path):
    program = small_program(tmp_path)
    first = run(program, tmp_path / "runs", steps=2)
    second = run(program, tmp_path / "runs", steps=2)
    assert second.run_dir != first.run_dir and second.resumed_from == 0


def test_training_lowers_heldout_bits_per_byte(tmp_path):
    program = small_program(tmp_path)
    result = run(program, tmp_path / "runs", steps=40)
    evals = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "heldout_bpb" in r]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == 40
    assert evals[-1]["heldout_bpb"] < evals[0]["heldout_bpb"] - 1.0


def test_run_folder_records_spec_env_and_data_hash(tmp_path):
    program = small_program(tmp_path)
    result = run(program, tmp_path / "runs", steps=1)
    folder = result.run_dir
    for name in ("spec.yaml", "spec.resolved.yaml", "program.py", "plan.json", "env.json",
                 "metrics.jsonl", "run.json", "overrides.txt"):
        assert (folder / name).is_file(), name
    env = json.loads((folder / "env.json").read_text())
    assert len(env["data_sha256"]) == 64 and env["seed"] == 0


def test_step_level_with_period_two_updates_every_other_step(tmp_path):
    program = small_program(tmp_path, ["levels.outer.every=2 steps"])
    torch.manual_seed(program.train["seed"])  # as the trainer does before building
    model_before = program.build_model()
    result = run(program, tmp_path / "r1", steps=1)
    weights, _, _ = final_state(result.run_dir)
    name = "layers.0.blocks.attn.body.qkv.weight"
    assert torch.equal(weights[name], model_before.state_dict()[name])  # not yet at step 1
    result = run(program, tmp_path / "r2", steps=2)
    weights, _, _ = final_state(result.run_dir)
    assert not torch.equal(weights[name], model_before.state_dict()[name])  # fired at step 2


@pytest.mark.slow
def test_cms_spec_200_steps_lowers_bpb_and_resumes_bitwise(tmp_path):
    """The done-when run at the shipped spec's own size (minutes): -m slow."""
    program = load_program(compile_build(tmp_path / "build", "cms", ["train.eval_batches=2"]))
    whole = run(program, tmp_path / "a", steps=200)
    with pytest.raises(Interrupted):
        run(program, tmp_path / "b", steps=200, interrupt_at=100)
    resumed = run(program, tmp_path / "b", steps=200)
    w1, _, _ = final_state(whole.run_dir)
    w2, _, _ = final_state(resumed.run_dir)
    assert all(torch.equal(w1[n], w2[n]) for n in w1)
    evals = [r for r in read_metrics(whole.run_dir / "metrics.jsonl") if "heldout_bpb" in r]
    assert evals[-1]["heldout_bpb"] < evals[0]["heldout_bpb"]


@pytest.mark.parametrize("precision", ["bf16", "fp64"])
def test_other_precisions_train(tmp_path, precision):
    program = small_program(tmp_path, [f"train.precision={precision}"])
    result = run(program, tmp_path / "runs", steps=2)
    assert result.step == 2 and 0 < result.heldout_bpb < 20


def test_non_finite_loss_is_a_training_error(tmp_path):
    program = small_program(tmp_path, ["levels.outer.rule.lr=1.0e+30",
                                       "levels.cms_fast.rule.lr=1.0e+30"])
    with pytest.raises(TrainingError, match="loss became"):
        run(program, tmp_path / "runs", steps=20)


def test_crashed_run_resumes_from_its_last_checkpoint_bitwise(tmp_path, monkeypatch):
    # A hard crash (no checkpoint at the moment of death): the run continues from the last
    # periodic checkpoint and replays the lost steps exactly.
    import nestgraph.runtime.train.loop as loop

    program = small_program(tmp_path, ["train.checkpoint_every=5"])
    whole = run(program, tmp_path / "a", steps=12)
    real_step = loop.train_step

    def crash_at_8(state, *args):
        if state.step == 8:
            raise RuntimeError("power cut")
        return real_step(state, *args)

    monkeypatch.setattr(loop, "train_step", crash_at_8)
    with pytest.raises(RuntimeError, match="power cut"):
        run(program, tmp_path / "b", steps=12)
    monkeypatch.setattr(loop, "train_step", real_step)
    resumed = run(program, tmp_path / "b", steps=12)
    assert resumed.resumed_from == 5
    w1, _, _ = final_state(whole.run_dir)
    w2, _, _ = final_state(resumed.run_dir)
    assert all(torch.equal(w1[n], w2[n]) for n in w1)
    steps = [r["step"] for r in read_metrics(resumed.run_dir / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, 13))


def test_auto_resume_finds_the_interrupted_run_behind_a_newer_one(tmp_path):
    program = small_program(tmp_path)
    with pytest.raises(Interrupted) as stop:
        run(program, tmp_path / "runs", steps=6, interrupt_at=3)
    run(program, tmp_path / "runs", steps=1, resume="never")  # a newer, unrelated run
    resumed = run(program, tmp_path / "runs", steps=6)
    assert resumed.run_dir == stop.value.run_dir and resumed.resumed_from == 3


def test_auto_resume_never_continues_a_run_under_other_settings(tmp_path):
    program = small_program(tmp_path)
    with pytest.raises(Interrupted) as stop:
        run(program, tmp_path / "runs", steps=6, interrupt_at=3)
    cfg = dict(program.train, steps=6, batch=1)
    other = train(program, cfg, program.data, out=tmp_path / "runs", reporter=SilentReporter())
    assert other.run_dir != stop.value.run_dir and other.resumed_from == 0


def test_explicit_resume_uses_the_runs_own_settings_and_refuses_another_spec(tmp_path):
    program = small_program(tmp_path)
    with pytest.raises(Interrupted) as stop:
        run(program, tmp_path / "runs", steps=6, interrupt_at=3)
    cfg = dict(program.train, steps=50, batch=1)  # ignored: the run keeps its own settings
    resumed = train(program, cfg, program.data, out=tmp_path / "elsewhere",
                    resume=str(stop.value.run_dir), reporter=SilentReporter())
    assert resumed.step == 6 and resumed.run_dir == stop.value.run_dir
    other = load_program(compile_build(tmp_path / "other", "cms", [*SMALL_CMS, "model.dim=8"]))
    with pytest.raises(TrainingError, match="another spec"):
        run(other, tmp_path / "runs", steps=6, resume=str(stop.value.run_dir))


def test_ctrl_c_during_the_last_step_lets_the_run_finish(tmp_path):
    program = small_program(tmp_path)
    result = run(program, tmp_path / "runs", steps=3, interrupt_at=3)
    assert result.step == 3
    evals = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "heldout_bpb" in r]
    assert evals[-1]["step"] == 3


def test_a_dmgd_run_resumes_bitwise(tmp_path):
    # DMGD's deep memory (its linear part, codes, bias and second layer) goes through the
    # checkpoint: a run interrupted and resumed ends with the weights of one that was not.
    program = load_program(compile_build(tmp_path / "build", "optimizers/dmgd", [
        "model.dim=16", "model.layers=1", "train.batch=2", "train.seq_len=32",
        "train.eval_every=0"]))
    whole = run(program, tmp_path / "a", steps=6)
    with pytest.raises(Interrupted):
        run(program, tmp_path / "b", steps=6, interrupt_at=3)
    resumed = run(program, tmp_path / "b", steps=6, resume="auto")
    assert resumed.resumed_from == 3
    (w1, _, _), (w2, _, _) = final_state(whole.run_dir), final_state(resumed.run_dir)
    for name in w1:
        assert torch.equal(w1[name], w2[name]), name
