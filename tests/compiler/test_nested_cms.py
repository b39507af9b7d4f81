"""Nested CMS: each block's level learns the next faster block's initial state and resets it."""

from __future__ import annotations

import pytest

from nestgraph.compiler import compile_spec
from nestgraph.errors import CompileError
from nestgraph.spec import read_document

NESTED = ["modules.cms.variant=nested", "~modules.cms.blocks.slow", "~levels.cms_slow"]


def test_each_level_resets_the_next_faster_block():
    data, source = read_document("hope-attention", NESTED)
    result = compile_spec(data, source)
    by_name = {lv["name"]: lv for lv in result.plan["levels"]}
    assert by_name["cms_mid"]["resets"] == [f"layers.{i}.blocks.cms.body.blocks.fast"
                                            for i in range(2)]
    assert "resets" not in by_name["cms_fast"]
    assert "resets=('layers.0.blocks.cms.body.blocks.fast'," in result.program
    assert "variant='nested'" in result.program


def test_a_stream_level_in_a_nested_chain_is_not_run():
    data, source = read_document("hope-attention", ["modules.cms.variant=nested"])
    with pytest.raises(CompileError) as err:
        compile_spec(data, source)
    assert "nested chain" in str(err.value) and "cms_slow" in str(err.value)


def test_a_nested_chain_trains(tmp_path):
    from nestgraph.runtime.program import load_program
    from nestgraph.runtime.train.loop import train
    from nestgraph.runtime.train.progress import SilentReporter
    from nestgraph.testing import compile_build

    program = load_program(compile_build(tmp_path / "build", "hope-attention", [
        *NESTED, "model.dim=16", "train.batch=2", "train.eval_batches=1", "train.eval_every=0",
        "data.max_bytes=100000"]))
    result = train(program, dict(program.train, steps=2), program.data, out=tmp_path / "runs",
                   reporter=SilentReporter())
    assert result.step == 2
