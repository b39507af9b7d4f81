"""NL §7.3: a trained Transformer's MLPs become a CMS's blocks. Converted, the model starts at
the trained model's held-out loss (in-context updates off); with them on, the CMS learns."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nestgraph.cli import app
from nestgraph.runtime.engine import read_sequence
from nestgraph.runtime.program import load_program
from nestgraph.runtime.train import checkpoint as ckpt
from nestgraph.runtime.train.data import heldout_batches, load_corpus
from nestgraph.runtime.train.step import build_state
from nestgraph.testing import compile_build, train_build

TINY = ["model.dim=16", "train.batch=2", "train.seq_len=64", "train.eval_batches=1",
        "train.eval_every=0", "data.max_bytes=60000", "train.threads=1"]
MAPS = ["--map", "blocks.mlp.body.=blocks.cms.body.blocks.fast.",
        "--map", "blocks.mlp.=blocks.cms."]
ZERO = ["--zero", "*.blocks.mid.w2", "--zero", "*.blocks.slow.w2"]


def heldout_loss(build: Path, weights: dict, in_context: bool) -> float:
    program = load_program(build)
    state = build_state(program, dict(program.train), torch.device("cpu"))
    state.model.load_state_dict(weights)
    corpus = load_corpus(None, max_bytes=60000)
    x, y = next(iter(heldout_batches(corpus.heldout, batch=2, seq_len=64, max_batches=1)))
    with torch.enable_grad():
        return read_sequence(state.model, program.schedule, x, y, state.stream,
                             learn_stream=False, differentiable=False,
                             in_context=in_context).loss.item()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("convert")
    source = compile_build(tmp / "transformer", "transformer", TINY)
    run = train_build(source, steps=3, out=tmp / "runs")
    target = compile_build(tmp / "hope-attention", "hope-attention", TINY + [
        "modules.cms.blocks.fast.expand=4", "levels.cms_mid.every=32 tokens",
        "levels.cms_slow.every=32 tokens"])
    return tmp, source, run, target


def test_a_converted_model_starts_at_the_trained_models_loss(trained):
    tmp, source, run, target = trained
    out = tmp / "init.safetensors"
    result = CliRunner().invoke(app, ["convert", str(run), str(target), *MAPS, *ZERO, "-o",
                                      str(out)])
    assert result.exit_code == 0, result.output
    # Only the zeroed blocks' input layers keep their initial values (their outputs are zero).
    assert "copied 14 weights, zeroed 4, left 4 at their initial values" in result.output
    fresh = [line.split()[-1] for line in result.output.splitlines() if "fresh:" in line]
    assert sorted(fresh) == sorted(f"layers.{i}.blocks.cms.body.blocks.{b}.w1"
                                   for i in (0, 1) for b in ("mid", "slow"))
    import safetensors.torch

    converted = safetensors.torch.load_file(str(out))
    trained_weights = ckpt.load_checkpoint(ckpt.latest_checkpoint(run))[0]
    before = heldout_loss(source, trained_weights, in_context=False)
    after = heldout_loss(target, converted, in_context=False)
    assert after == pytest.approx(before, abs=1e-5)
    # The CMS levels then learn in context from that start: their updates change the loss.
    assert abs(heldout_loss(target, converted, in_context=True) - after) > 1e-4
    # And a run of the build starts from the file.
    run2 = train_build(target, [f"train.init={out}"], steps=1, out=tmp / "runs2")
    assert run2.is_dir()


def test_a_width_mismatch_is_refused_with_the_fix(trained):
    tmp, _, run, _ = trained
    narrow = compile_build(tmp / "narrow", "hope-attention", TINY + [
        "levels.cms_mid.every=32 tokens", "levels.cms_slow.every=32 tokens"])
    result = CliRunner().invoke(app, ["convert", str(run), str(narrow), *MAPS])
    assert result.exit_code == 2
    assert "in the source but" in result.output and "expand=4" in result.output
