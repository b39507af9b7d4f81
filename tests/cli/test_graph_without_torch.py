"""`nestgraph graph SPEC` draws without importing torch, and draws what compiling finds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nestgraph.compiler import compile_spec
from nestgraph.spec import read_document, shipped_specs
from nestgraph.viz import shapes, sources

SPECS = [*shipped_specs(), *shipped_specs(folder="optimizers"), *shipped_specs(folder="ablations")]
CASES = [(name, ()) for name in SPECS] + [
    ("titans", ("modules.mem.memory.kind=linear", "modules.mem.conv=0")),
    ("hope", ("modules.selfmod.memory.kind=linear", "modules.selfmod.gate=false")),
    ("cms", ("modules.cms.variant=independent", "model.final_norm=layer",
             "model.tie_embeddings=false")),
    ("hope-attention", ("modules.cms.blocks.fast.gated=true",)),  # a gated MLP's W3
]


@pytest.mark.parametrize("argv", [["graph", "hope", "--format", "dot"],
                                  ["graph", "cms.ng", "--view", "modules", "--format", "json"],
                                  ["graph", "titans-mag", "--format", "mermaid"]])
def test_graph_of_a_spec_does_not_import_torch(argv):
    code = ("import sys\nfrom nestgraph.cli import app\n"
            f"try:\n    app({argv!r})\nexcept SystemExit as stop:\n"
            "    print('CODE', stop.code, file=sys.stderr)\n"
            "print('TORCH', 'torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert "CODE 0" in done.stderr, done.stderr
    assert "TORCH False" in done.stderr, done.stderr
    assert done.stdout.strip()


@pytest.mark.parametrize(("name", "overrides"), CASES)
def test_the_torch_free_plan_is_the_compiled_plan(name, overrides):
    data, source = read_document(name, list(overrides))
    expected = compile_spec(data, source, stop_after="plan").plan
    plan, spec = sources.from_spec(name, list(overrides))
    assert plan == expected
    assert list(plan["parts"]) == list(expected["parts"])


def test_unknown_modules_fall_back_to_torch(monkeypatch):
    monkeypatch.setattr(shapes, "param_shapes", lambda source: None)
    data, source = read_document("cms", [])
    assert sources.from_spec("cms", [])[0] == compile_spec(data, source, stop_after="plan").plan


def test_the_stand_ins_refuse_what_torch_would():
    source = "def build_model():\n    return L.Attention(dim=10, heads=4)\n"
    assert shapes.param_shapes(source) is None
    assert shapes.param_shapes("def build_model():\n    return L.Unknown()\n") is None
