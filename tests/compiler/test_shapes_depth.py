"""The shapes pass works per distinct layer: its cost does not grow with model.layers."""

from __future__ import annotations

import pytest

from nestgraph.compiler import compile_spec
from nestgraph.compiler.codegen import model_source
from nestgraph.compiler.ir import facts, memory_levels
from nestgraph.runtime.layers import core as runtime_layers
from nestgraph.spec import read_document


def _compiled(spec: str, depth: int):
    data, source = read_document(spec, [f"model.layers={depth}", "model.dim=16"])
    return compile_spec(data, source, stop_after="shapes")


@pytest.fixture
def layer_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = []
    forward, init = runtime_layers.Layer.forward, runtime_layers.Layer.__init__

    def counted_forward(self, *args, **kwargs):
        calls.append(1)
        return forward(self, *args, **kwargs)

    def counted_init(self, *args, **kwargs):
        calls.append(0)
        init(self, *args, **kwargs)

    monkeypatch.setattr(runtime_layers.Layer, "forward", counted_forward)
    monkeypatch.setattr(runtime_layers.Layer, "__init__", counted_init)
    return calls


def test_one_layer_is_built_and_run_whatever_the_depth(layer_calls: list[int]) -> None:
    out = _compiled("transformer", 64)
    assert layer_calls == [0, 1]  # one layer built, one forward through it
    shapes = facts(out.graph).param_shapes
    assert {n.split(".")[1] for n in shapes if n.startswith("layers.")} == {
        str(i) for i in range(64)}


@pytest.mark.parametrize("spec", ["transformer", "hope"])
def test_the_shapes_are_those_of_the_whole_network(spec: str) -> None:
    import torch

    out = _compiled(spec, 3)
    g = out.graph
    namespace = {"L": runtime_layers}
    from nestgraph.runtime import levels
    from nestgraph.runtime.layers import selfmod as selfmod_layer
    from nestgraph.runtime.layers import titans

    namespace.update(T=titans, S=selfmod_layer, lv=levels, SCHEDULE=())  # shapes: no binding
    exec(compile(model_source(out.spec, memory_levels(g)), "<m>", "exec"), namespace)  # noqa: S102
    with torch.device("meta"):
        whole = namespace["build_model"]()
    expected = {n: tuple(p.shape) for n, p in whole.named_parameters()}
    assert list(facts(g).param_shapes.items()) == list(expected.items())
    total = sum(p.numel() for p in whole.parameters())
    assert sum(facts(g).part_params.values()) == total
