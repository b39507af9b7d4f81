"""One tiny trained run shared by the evaluation tests (dim 16, seq_len 32, two steps)."""

from __future__ import annotations

import pytest
import torch

from nestgraph.runtime.program import load_program
from nestgraph.runtime.progress import SilentReporter
from nestgraph.runtime.train import train
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


def reader_ready() -> bool:
    """Whether `read_long` carries state and takes off/reset (the engine work of the same
    issue); the tests that need it are skipped, and say so, until it does."""
    from nestgraph.runtime.engine import StreamState
    from nestgraph.runtime.reader import read_long

    try:
        read_long(torch.nn.Identity(), (), torch.zeros(1, 2, dtype=torch.long), seq_len=1,
                  stream=StreamState(), carry=True)
    except NotImplementedError:
        return False
    except Exception:  # noqa: BLE001 - an Identity model is no model: the stub is gone
        return True
    return True


@pytest.fixture
def carrying_reader():
    """Skips, saying why, a test that needs the carrying reader while it is not there."""
    if not reader_ready():
        pytest.skip("read_long(carry/off/reset) is not implemented in this tree yet")
