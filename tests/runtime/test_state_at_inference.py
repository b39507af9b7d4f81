"""State at inference: generation reads windows once with the state carried, stream state
saved and reloaded bitwise, stream levels that learn at test time, and `generate`'s options."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from nestgraph.cli import app
from nestgraph.errors import UsageProblem
from nestgraph.runtime.engine import init_stream
from nestgraph.runtime.generate import _Reader
from nestgraph.runtime.program import load_program
from nestgraph.runtime.reader import read_long
from nestgraph.runtime.state_file import load_state, save_state
from nestgraph.runtime.train.checkpoint import CheckpointError
from nestgraph.testing import SMALL_CMS, compile_build

W = 16
CMS = ["model.dim=16", "model.layers=1", f"train.seq_len={W}", "levels.cms_fast.every=4 tokens",
       "levels.cms_mid.every=8 tokens", "levels.cms_slow.every=16 tokens",
       "levels.cms_slow.rule.lr=0.05", "levels.cms_slow.rule.clip=0"]


@pytest.fixture(scope="module")
def cms(tmp_path_factory):
    program = load_program(compile_build(tmp_path_factory.mktemp("cms") / "build", "cms", CMS))
    torch.manual_seed(0)
    return program.build_model().double(), program.schedule


def text(n=4 * W + 1, seed=2):
    return torch.randint(0, 256, (1, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("learn", [False, True])
def test_generation_reads_each_window_once_and_agrees_with_one_carried_read(cms, learn):
    model, schedule = cms
    tokens = text(3 * W + 5)
    a, b = init_stream(model, schedule), init_stream(model, schedule)
    reader = _Reader(model, schedule, a, W, learn, bf16=False)
    got = torch.stack([reader.next_logits(tokens[0, :n].tolist())
                       for n in range(1, tokens.shape[1])])
    assert reader.done == 3 * W  # the three full windows were committed, once each
    long = read_long(model, schedule, tokens, seq_len=W, stream=b, learn_stream=learn)
    # Greedy predictions at every position equal the carried reader's.
    assert torch.equal(got.argmax(-1), long.predictions[0])
    if learn:
        assert a.position == 3 * W and b.position == 3 * W + 4  # b also read the partial one


def test_stream_state_saved_and_reloaded_is_bitwise_equal(cms, tmp_path):
    model, schedule = cms
    stream = init_stream(model, schedule)
    read_long(model, schedule, text(), seq_len=W, stream=stream, learn_stream=True)
    save_state(tmp_path / "s.safetensors", stream, "cms")
    back = load_state(tmp_path / "s.safetensors", init_stream(model, schedule))
    assert back.position == stream.position
    for table in ("weights", "accum", "velocity"):
        mine, theirs = getattr(stream, table), getattr(back, table)
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[n], theirs[n]) for n in mine)
    probe = text(seed=9)
    one = read_long(model, schedule, probe, seq_len=W, stream=stream, learn_stream=True)
    two = read_long(model, schedule, probe, seq_len=W, stream=back, learn_stream=True)
    assert torch.equal(one.losses, two.losses)


def test_a_stream_level_learns_at_test_time_toward_lower_loss(cms):
    model, schedule = cms
    stream = init_stream(model, schedule)
    corpus = text(8 * W + 1, seed=4)
    before = read_long(model, schedule, corpus, seq_len=W, stream=stream).losses
    for _ in range(3):  # test-time learning: the stream level reads the text
        read_long(model, schedule, corpus, seq_len=W, stream=stream, learn_stream=True)
    after = read_long(model, schedule, corpus, seq_len=W, stream=stream).losses
    assert not torch.allclose(before, after)
    assert after.mean() < before.mean() - 1e-3, (before.mean(), after.mean())
    reset = read_long(model, schedule, corpus, seq_len=W, stream=stream, reset={"cms_slow"})
    assert torch.equal(reset.losses, before)  # what it learned is all in its Δ


def test_bad_state_files_are_clear_errors(cms, tmp_path):
    model, schedule = cms
    like = init_stream(model, schedule)
    with pytest.raises(UsageProblem, match="does not exist"):
        load_state(tmp_path / "none", like)
    (tmp_path / "junk").write_bytes(b"not a state file")
    with pytest.raises(CheckpointError, match="unreadable") as err:
        load_state(tmp_path / "junk", like)
    assert err.value.hint
    other = init_stream(model, schedule)
    other.weights = {n: torch.zeros(3) for n in other.weights}
    save_state(tmp_path / "other", other, "other")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_state(tmp_path / "other", like)


def test_generate_saves_loads_and_forks_stream_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args])

    assert invoke("compile", "cms", *SMALL_CMS, "levels.cms_slow.every=64 tokens").exit_code == 0
    assert invoke("train", "--steps", "1", "train.batch=1").exit_code == 0
    run = next((tmp_path / "runs" / "cms").iterdir())
    prompt = "def f(x):\n    return x\n" * 6  # longer than one window (64 bytes)
    learned = invoke("generate", run, "--prompt", prompt, "--tokens", "3", "--learn",
                     "--save-state", tmp_path / "a.st")
    assert learned.exit_code == 0, learned.output
    fork = invoke("generate", run, "--tokens", "3", "--state", tmp_path / "a.st",
                  "--save-state", tmp_path / "b.st", "--temperature", "0")
    assert fork.exit_code == 0, fork.output
    a, b = (load_state(tmp_path / f, _run_stream(run)) for f in ("a.st", "b.st"))
    assert a.position == b.position > 0  # the fork without --learn is the same state
    assert all(torch.equal(a.weights[n], b.weights[n]) for n in a.weights)
    assert any(bool(a.weights[n].abs().sum() > 0) for n in a.weights)  # --learn learned
    missing = invoke("generate", run, "--state", tmp_path / "nope.st")
    assert missing.exit_code == 2 and "does not exist" in missing.output
    assert "Traceback" not in missing.output
    (tmp_path / "bad.st").write_bytes(b"\x00" * 10)
    bad = invoke("generate", run, "--state", tmp_path / "bad.st")
    assert bad.exit_code == 5 and "help: save it again" in bad.output
    nowhere = invoke("generate", run, "--save-state", tmp_path / "no" / "dir" / "s.st")
    assert nowhere.exit_code == 2


def _run_stream(run):
    from nestgraph.compiler.buildfolder import load_run

    return load_run(run)[2]
