"""NL §7.3 from a Hugging Face checkpoint: a tiny random Llama saved locally, converted into a
nestgraph Transformer, gives the same logits; converted into Hope-Attention (its MLPs the CMS's
fast block, the other blocks' outputs zero), it starts at the same loss. Builds that would not
compute what the checkpoint computes are refused with the override that fits."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from transformers import GPT2Config, LlamaConfig, LlamaForCausalLM
from typer.testing import CliRunner

from nestgraph import api
from nestgraph.cli import app
from nestgraph.errors import EnvironmentProblem
from nestgraph.runtime.engine import read_sequence
from nestgraph.runtime.program import load_program
from nestgraph.runtime.train.hf_checkpoint import is_hf_folder
from nestgraph.runtime.train.step import build_state
from nestgraph.testing import compile_build

TINY = ["train.batch=2", "train.seq_len=64", "train.threads=1"]
# The nestgraph Transformer that a tiny Llama (below) is: a gated silu MLP of width 64.
LLAMA = ["model.dim=32", "modules.attn.heads=4", "modules.attn.rope_base=500",
         "modules.mlp.gated=true", "modules.mlp.activation=silu", "modules.mlp.expand=2"]
MAPS = ["--map", "blocks.mlp.body.=blocks.cms.body.blocks.fast.",
        "--map", "blocks.mlp.=blocks.cms."]
ZERO = ["--zero", "*.blocks.mid.w2", "--zero", "*.blocks.slow.w2"]
TEXT = b"First Citizen: Before we proceed any further, hear me speak. All: Speak, speak."


def tiny_llama(folder: Path, tied: bool, **config) -> LlamaForCausalLM:
    """A random Llama whose every weight matters: the norms' gains away from 1, the
    projections large enough that a wrong pairing of RoPE's dimensions shows in the logits."""
    settings = dict(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                    rms_norm_eps=1e-6, rope_theta=500.0, tie_word_embeddings=tied)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**{**settings, **config}))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    return model.eval()


@pytest.fixture(scope="module")
def llamas(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hf")
    return tmp, {tied: (tmp / f"llama-{tied}", tiny_llama(tmp / f"llama-{tied}", tied))
                 for tied in (False, True)}


def converted(source: Path, build: Path, out: Path, *args: str) -> dict:
    result = CliRunner().invoke(app, ["convert", str(source), str(build), *args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    return safetensors.torch.load_file(str(out))


@pytest.mark.parametrize("tied", [False, True])
def test_a_converted_llama_gives_the_checkpoints_logits(llamas, tied):
    tmp, models = llamas
    folder, hf = models[tied]
    build = compile_build(tmp / f"transformer-{tied}", "transformer",
                          TINY + LLAMA + ([] if tied else ["model.tie_embeddings=false"]))
    weights = converted(folder, build, tmp / f"init-{tied}.safetensors")
    model = load_program(build).build_model().double()
    model.load_state_dict(weights)
    tokens = torch.tensor([list(TEXT)])
    with torch.no_grad():
        ours, theirs = model(tokens), hf.double()(tokens).logits
    assert theirs.abs().max() > 3  # logits far from zero: the comparison has something to see
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_a_llama_converted_into_hope_attention_starts_at_its_loss(llamas):
    tmp, models = llamas
    folder, hf = models[False]
    build = compile_build(tmp / "hope-attention", "hope-attention", TINY + LLAMA[:3] + [
        "model.tie_embeddings=false", "modules.cms.blocks.fast.gated=true",
        "modules.cms.blocks.fast.activation=silu", "levels.cms_mid.every=32 tokens",
        "levels.cms_slow.every=32 tokens"])
    weights = converted(folder, build, tmp / "hope.safetensors", *MAPS, *ZERO)
    x = torch.tensor([list(TEXT[:64]), list(TEXT[1:65])])
    y = torch.tensor([list(TEXT[1:65]), list(TEXT[2:66])])
    with torch.no_grad():
        logits = hf.float()(x).logits
    theirs = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1)).item()
    assert loss(build, weights, x, y, in_context=False) == pytest.approx(theirs, abs=1e-5)
    # From there the CMS levels learn in context: their updates change the loss.
    assert abs(loss(build, weights, x, y, in_context=True) - theirs) > 1e-4


def loss(build: Path, weights: dict, x, y, in_context: bool) -> float:
    program = load_program(build)
    state = build_state(program, dict(program.train), torch.device("cpu"))
    state.model.load_state_dict(weights)
    with torch.enable_grad():
        return read_sequence(state.model, program.schedule, x, y, state.stream,
                             learn_stream=False, differentiable=False,
                             in_context=in_context).loss.item()


@pytest.mark.parametrize(("overrides", "fix"), [
    (["model.dim=16"], "model.dim=32"),
    (["model.layers=3"], "model.layers=2"),
    (["modules.attn.heads=2"], "modules.attn.heads=4"),
    (["modules.attn.rope_base=10000"], "modules.attn.rope_base=500"),
    (["modules.mlp.gated=false"], "modules.mlp.gated=true"),
    (["modules.mlp.activation=gelu"], "modules.mlp.activation=silu"),
    (["modules.mlp.expand=4"], "modules.mlp.expand=2"),
    (["model.final_norm=layer"], "model.final_norm=rms"),
    (["model.block=[attn, {module: mlp, norm: layer}]"], "'model.block=[attn, mlp]'"),
    (["model.block=[attn, {module: mlp, residual: false}]"], "'model.block=[attn, mlp]'"),
    (["model.block=[mlp, attn]"], "the attention module, then the MLP"),
    (["model.tie_embeddings=true"], "model.tie_embeddings=false"),
])
def test_a_build_that_does_not_fit_is_refused_with_the_override(llamas, overrides, fix):
    tmp, models = llamas
    build = compile_build(tmp / f"misfit-{fix}", "transformer",
                          TINY + LLAMA + ["model.tie_embeddings=false"] + overrides)
    result = CliRunner().invoke(app, ["convert", str(models[False][0]), str(build)])
    assert result.exit_code == 2, result.output
    assert fix in result.output
    assert not (build / "init.safetensors").exists()


@pytest.mark.parametrize(("config", "why"), [
    ({"num_key_value_heads": 2}, "key/value heads"),
    ({"attention_bias": True}, "biases"),
    ({"rms_norm_eps": 1e-5}, "epsilon"),
])
def test_a_llama_with_what_nestgraph_lacks_is_refused(tmp_path, config, why):
    tiny_llama(tmp_path / "hf", tied=False, **config)
    build = compile_build(tmp_path / "b", "transformer",
                          TINY + LLAMA + ["model.tie_embeddings=false"])
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "hf"), str(build)])
    assert result.exit_code == 2, result.output
    assert why in result.output


def test_a_gpt2_checkpoint_is_refused_naming_what_is_missing(tmp_path):
    GPT2Config(n_embd=32, n_layer=1, n_head=4, vocab_size=256).save_pretrained(tmp_path)
    build = compile_build(tmp_path / "b", "transformer", TINY)
    result = CliRunner().invoke(app, ["convert", str(tmp_path), str(build)])
    assert result.exit_code == 2, result.output
    assert "GPT-2" in result.output and "position embeddings" in result.output


def test_without_transformers_the_extra_is_named(llamas, monkeypatch):
    tmp, models = llamas
    monkeypatch.setitem(sys.modules, "transformers", None)  # its import now fails
    with pytest.raises(EnvironmentProblem) as caught:
        api.convert(models[False][0], tmp / "no-build")  # the checkpoint is read first
    assert "nestgraph[hf]" in caught.value.hint


def test_a_run_folder_is_not_taken_for_a_hugging_face_one(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.json").write_text("{}")
    assert not is_hf_folder(tmp_path)
    (tmp_path / "checkpoints").rmdir()
    assert is_hf_folder(tmp_path)


def test_a_malformed_shard_index_is_refused_without_a_traceback(tmp_path):
    import shutil

    tiny_llama(tmp_path / "hf", tied=False)
    weights = tmp_path / "hf" / "model.safetensors"
    shutil.move(weights, tmp_path / "hf" / "model-00001-of-00001.safetensors")
    (tmp_path / "hf" / "model.safetensors.index.json").write_text("{not json")
    build = compile_build(tmp_path / "b", "transformer",
                          TINY + LLAMA + ["model.tie_embeddings=false"])
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "hf"), str(build)])
    assert result.exit_code == 2, result.output
    assert "cannot read the shard index" in result.output
    assert "Traceback" not in result.output
