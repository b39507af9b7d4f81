"""One tiny trained run shared by the evaluation tests (dim 16, seq_len 32, two steps)."""

from __future__ import annotations

import pytest

from nestgraph.runtime.program import load_program
from nestgraph.runtime.train.loop import train
from nestgraph.runtime.train.progress import SilentReporter
from nestgraph.testing import compile_build

TINY = ("model.dim=16", "train.batch=2", "train.seq_len=32", "levels.cms_fast.every=8 tokens",
        "levels.cms_mid.every=16 tokens", "levels.cms_slow.every=64 tokens",
        "train.eval_batches=1", "train.eval_every=0", "train.log_every=1000",
        "data.max_bytes=60000", "train.threads=1")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The folder of a cms run trained two steps."""
    root = tmp_path_factory.mktemp("evalrun")
    program = load_program(compile_build(root / "build", "cms", TINY))
    result = train(program, dict(program.train, steps=2), program.data, out=root / "runs",
                   reporter=SilentReporter())
    return result.run_dir


@pytest.fixture(scope="session")
def loaded(tiny_run):
    from nestgraph.evaluation.loaded import load

    return load(tiny_run)
