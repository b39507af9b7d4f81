"""GPU-readiness: a training step reads tensors back to the host a fixed number of times,
however many chunks its sequences have (on a GPU every such read waits for the device)."""

from __future__ import annotations

import sys

import pytest
import torch

from nestgraph.runtime.program import load_program
from nestgraph.runtime.train.data import load_corpus
from nestgraph.runtime.train.step import build_state, train_step
from nestgraph.spec import shipped_specs
from nestgraph.testing import compile_build

SMALL = ["model.dim=16", "train.batch=1", "data.max_bytes=20000"]
READS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__")


def host_reads(tmp_path, name: str, seq_len: int, monkeypatch) -> int:
    program = load_program(compile_build(tmp_path / f"{seq_len}", name,
                                         [*SMALL, f"train.seq_len={seq_len}"]))
    cfg = dict(program.train)
    device = torch.device("cpu")
    state = build_state(program, cfg, device)
    corpus = load_corpus(None, max_bytes=20000)  # the embedded default corpus
    train_step(state, program, cfg, corpus, device)  # lazy set-up happens once, not counted
    count = [0]
    with monkeypatch.context() as patch:
        for method in READS:
            original = getattr(torch.Tensor, method)

            def counted(self, *args, _original=original, **kwargs):
                # torch's own optimizers keep their step counters on the host by design.
                if "torch/optim" not in sys._getframe(1).f_code.co_filename:
                    count[0] += 1
                return _original(self, *args, **kwargs)

            patch.setattr(torch.Tensor, method, counted)
        train_step(state, program, cfg, corpus, device)
    return count[0]


@pytest.mark.parametrize("name", sorted(shipped_specs()))
def test_host_reads_do_not_grow_with_the_number_of_chunks(tmp_path, name, monkeypatch):
    short, long = (host_reads(tmp_path, name, n, monkeypatch) for n in (256, 512))
    assert short == long, f"{name}: {short} host reads at 256 tokens, {long} at 512"
    assert short <= 3, f"{name}: {short} host reads in one step"
