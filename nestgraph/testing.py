"""Helpers for tests of nestgraph and of projects built on it."""

from __future__ import annotations

from pathlib import Path

# A CMS configuration small enough to train about ten steps a second on a CPU.
SMALL_CMS = (
    "model.dim=16", "train.batch=2", "train.seq_len=64", "levels.cms_mid.every=32 tokens",
    "levels.cms_slow.every=128 tokens", "train.eval_batches=1", "train.eval_every=0",
    "train.log_every=1000", "data.max_bytes=200000",
)


def compile_build(folder: Path, spec: str, overrides=()) -> Path:
    """Compile a spec (a shipped name or a path) into `folder`, as `nestgraph compile -o` does."""
    from nestgraph.build import write_build
    from nestgraph.compiler import compile_spec
    from nestgraph.spec import read_document

    data, source = read_document(spec, list(overrides))
    return write_build(compile_spec(data, source), source, list(overrides), folder)
