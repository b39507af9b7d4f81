"""The regions `train.compile` compiles (one layer each) trace into one graph with no breaks:
`torch._dynamo.explain` on every shipped spec's layers, at the first chunk of a read (no
carried state) and at the next one (the state the first left in the cache)."""

from __future__ import annotations

import pytest
import torch

from nestgraph.runtime.mode import Cache, ReadMode
from nestgraph.runtime.program import load_program
from nestgraph.spec import shipped_specs
from nestgraph.testing import compile_build


@pytest.mark.parametrize("name", sorted(shipped_specs()))
def test_every_layer_traces_without_a_graph_break(tmp_path, name):
    program = load_program(compile_build(tmp_path, name, ["model.dim=16"]))
    torch.manual_seed(0)
    model = program.build_model()
    x = torch.randn(2, 16, model.dim)
    for mode in (ReadMode(), ReadMode(double_backward=True)):
        cache = Cache(None, mode)
        for position, layer in enumerate(model.layers):
            for call in ("first chunk", "carried state"):
                torch._dynamo.reset()
                explained = torch._dynamo.explain(layer)(x, cache)
                reasons = [r.reason for r in explained.break_reasons]
                assert explained.graph_break_count == 0, (name, position, call, reasons)
                assert explained.graph_count == 1, (name, position, call)
                assert explained.op_count > 0
                layer(x, cache)  # eagerly, so the next call finds the state it leaves
