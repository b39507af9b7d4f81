"""Runs with a tokenizer: bits per byte from token losses, the run's own copy, the commands."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from nestgraph.cli import app
from nestgraph.runtime.train.data import heldout_batches
from nestgraph.runtime.train.runs import read_metrics
from nestgraph.testing import MINIMAL_SPEC

pytest.importorskip("tokenizers")

runner = CliRunner()
# ASCII text, so that the bytes of any run of tokens are what the library decodes them to.
LINES = ["First Citizen:", "Before we proceed any further, hear me speak.", "",
         "All:", "Speak, speak.", "You are all resolved rather to die than to famish?"]
TEXT = "".join(f"{line} {i % 7}\n" for i in range(120) for line in LINES)
SMALL = ["--steps", "2", "train.batch=2", "train.seq_len=16", "train.eval_batches=2",
         "train.eval_every=0", "model.dim=16", "train.threads=1"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def spec_with(folder, tokenizer: str, vocab: int):
    """A spec next to its data and tokenizer, naming both by relative paths."""
    (folder / "text.txt").write_text(TEXT)
    spec = folder / "spec.yaml"
    spec.write_text(MINIMAL_SPEC.replace("  block:", f"  vocab: {vocab}\n  block:") +
                    f"data:\n  source: text.txt\n  heldout: 0.2\n  tokenizer: {tokenizer}\n")
    return spec


@pytest.fixture
def tokenizer_file(tmp_path):
    result = invoke("tokenizer", "train", _write(tmp_path / "text.txt"), "--vocab", 300,
                    "-o", tmp_path / "tokenizer.json")
    assert result.exit_code == 0, result.output
    return tmp_path / "tokenizer.json"


def _write(path):
    path.write_text(TEXT)
    return path


def _run(tmp_path, name="t"):
    return next((tmp_path / "runs" / name).iterdir())


def test_tokenizer_train_command_writes_a_file_that_encodes_every_byte(tokenizer_file,
                                                                      tmp_path):
    from nestgraph.runtime.train.tokenizer import load_tokenizer

    tokens = load_tokenizer(tokenizer_file)
    assert tokens.vocab == 300
    assert tokens.decode(tokens.encode("ünïcode ☃\n".encode())) == "ünïcode ☃\n".encode()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary


@pytest.mark.parametrize(("args", "code", "says"), [
    (["missing.txt", "--vocab", "300"], 5, "does not exist"),
    (["text.txt", "--vocab", "100"], 2, "out of range"),
    (["text.txt", "--vocab", "300", "-o", "no/such/tok.json"], 2, "folder does not exist"),
])
def test_tokenizer_train_command_errors(tmp_path, monkeypatch, args, code, says):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "text.txt")
    result = invoke("tokenizer", "train", *args)
    assert result.exit_code == code and says in result.output
    assert "Traceback" not in result.output


def test_tokenizer_train_command_names_the_extra_when_it_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tokenizers", None)
    result = invoke("tokenizer", "train", _write(tmp_path / "text.txt"), "--vocab", 300)
    assert result.exit_code == 6 and "nestgraph[tokenizers]" in result.output


def test_bits_per_byte_is_the_token_loss_over_the_bytes_it_covers(tokenizer_file, tmp_path,
                                                                  monkeypatch):
    """Two steps with a tokenizer file; the logged held-out figure is held to a hand
    conversion: the summed token loss in nats (read with the evaluation reader), over ln 2,
    over the bytes of the target tokens as the tokenizers library decodes them."""
    from nestgraph.evaluation.loaded import heldout_corpus, load
    from nestgraph.runtime.reader import read_long

    monkeypatch.chdir(tmp_path)
    spec = spec_with(tmp_path, "tokenizer.json", 300)
    result = invoke("train", spec, *SMALL)
    assert result.exit_code == 0, result.output
    run = _run(tmp_path)
    logged = [r["heldout_bpb"] for r in read_metrics(run / "metrics.jsonl")
              if "heldout_bpb" in r][-1]
    assert math.isfinite(logged)
    assert (run / "tokenizer.json").read_text() == tokenizer_file.read_text()

    loaded = load(run)
    corpus = heldout_corpus(loaded)
    inner = loaded.tokenizer.inner
    nats = covered = targets = 0.0
    for x, y in heldout_batches(corpus.heldout, batch=2, seq_len=16, max_batches=2):
        targets += y.numel()
        tokens = torch.cat([x, y[:, -1:]], dim=1)
        with torch.no_grad():
            nats += float(read_long(loaded.model, loaded.schedule, tokens, seq_len=16,
                                    stream=loaded.stream, carry=False).losses.sum())
        covered += sum(len(inner.decode(row.tolist()).encode()) for row in y)
    assert covered > 1.5 * targets  # tokens of several bytes: the conversion matters
    assert logged == pytest.approx(nats / math.log(2) / covered, rel=1e-5)

    text = invoke("generate", run, "--prompt", "All:", "--tokens", 5)
    assert text.exit_code == 0 and text.output.startswith("All:")
    levels = invoke("eval", run, "--task", "levels")
    assert levels.exit_code == 0, levels.output
    doc = json.loads((run / "eval" / "levels.json").read_text())
    assert doc["results"]["rows"][0]["bpb"] == pytest.approx(logged, rel=1e-5)
    refused = invoke("eval", run, "--task", "copy")
    assert refused.exit_code == 2 and "byte by byte" in refused.output


def test_a_bpe_trained_on_the_run_s_data_is_kept_in_the_run(tmp_path, monkeypatch):
    from nestgraph.runtime.train.data import load_corpus
    from nestgraph.runtime.train.tokenizer import bpe_from_bytes, load_tokenizer

    monkeypatch.chdir(tmp_path)
    spec = spec_with(tmp_path, "{bpe: 300}", 300)
    data = TEXT + "zyzzyva quixotic jukebox\n" * 40  # words only the held-out tail has
    (tmp_path / "text.txt").write_text(data)
    result = invoke("train", spec, *SMALL)
    assert result.exit_code == 0, result.output
    assert "tokenizer: a BPE of 300 tokens" in result.output
    run = _run(tmp_path)
    tokens = load_tokenizer(run / "tokenizer.json")
    # Learned from the training part only (training is deterministic), never the held-out one.
    train = load_corpus(tmp_path / "text.txt", heldout_fraction=0.2).train.numpy().tobytes()
    assert tokens.vocab == 300 and tokens.text == bpe_from_bytes(train, 300).text
    assert tokens.text != bpe_from_bytes(data.encode(), 300).text
    bpb = [r["heldout_bpb"] for r in read_metrics(run / "metrics.jsonl") if "heldout_bpb" in r]
    assert all(math.isfinite(b) for b in bpb)


def test_resuming_a_bpe_run_reads_its_own_tokenizer(tmp_path, monkeypatch):
    # The BPE is learned once, when the run begins; resuming must not learn it again.
    from nestgraph.runtime.train import tokenizer

    monkeypatch.chdir(tmp_path)
    spec = spec_with(tmp_path, "{bpe: 300}", 300)
    assert invoke("train", spec, *SMALL).exit_code == 0
    run = _run(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("the BPE was learned again")

    monkeypatch.setattr(tokenizer, "bpe_from_bytes", refuse)
    more = invoke("train", spec, *SMALL[2:], "--steps", "4", "--resume", run)
    assert more.exit_code == 0, more.output
    assert f"resuming {run}" in more.output


def test_vocab_mismatch_is_a_clear_error(tokenizer_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = spec_with(tmp_path, "{bpe: 300}", 256)
    result = invoke("validate", spec)
    assert result.exit_code == 3
    assert f"{spec}:" in result.output and "trains a BPE of 300 tokens" in result.output
    assert "set model.vocab to 300" in result.output

    spec = spec_with(tmp_path, "tokenizer.json", 256)
    result = invoke("train", spec, *SMALL)
    assert result.exit_code == 5
    assert "model.vocab is 256, but the tokenizer" in result.output
    assert "model.vocab=300" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("value", "says"), [("{bpe: 12}", "a whole number from 257"),
                                             ("{bep: 300}", "takes one key, bpe"),
                                             ("[1]", "is 'bytes', a tokenizer.json path")])
def test_a_malformed_tokenizer_is_one_located_spec_error(tmp_path, value, says):
    spec = spec_with(tmp_path, value, 300)
    result = invoke("validate", spec)
    assert result.exit_code == 3 and result.output.count("error[") == 1
    assert f"{spec}:" in result.output and says in result.output
