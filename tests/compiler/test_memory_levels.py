"""Memory levels (Titans): their checks, their plan, their generated code."""

from __future__ import annotations

import copy

import pytest

from nestgraph.compiler import check_document, compile_spec
from nestgraph.errors import SpecError
from nestgraph.spec import read_document
from nestgraph.testing import built, flat

BASE, _ = read_document("titans")


def data():
    return copy.deepcopy(BASE)


def level(d, name):
    return next(lv for lv in d["levels"] if lv["name"] == name)


def errors(d):
    with pytest.raises(SpecError) as err:
        check_document(d)
    return err.value.diagnostics


def test_titans_plan_and_program():
    result = compile_spec(data())
    kinds = {lv["name"]: lv["kind"] for lv in result.plan["levels"]}
    assert kinds == {"memory": "memory", "outer": "step"}
    outer = next(lv for lv in result.plan["levels"] if lv["name"] == "outer")
    assert outer["initial_states"] == ["mem.memory"]
    assert "layers.0.blocks.mem.body.memory" in outer["modules"]
    assert "T.NeuralMemory(dim=64, heads=4, kind='mlp'" in flat(result.program)
    # The level's settings are stated once, in SCHEDULE; the built memory has taken them.
    assert "chunk=" not in result.program
    memory = built(result.program).get_submodule("layers.0.blocks.mem.body")
    assert (memory.chunk, memory.objective, memory.rule) == (16, "l2", "titans")
    assert memory.constants == {"lr": None, "forget": None, "momentum": None}
    assert "from nestgraph.runtime.layers import titans as T" in flat(result.program)


def test_unstable_step_size_is_refused_with_a_safe_bound():
    d = data()
    level(d, "memory")["rule"] = {"type": "titans", "lr": 0.5, "momentum": 0.9}
    (diag,) = errors(d)
    assert diag.path == ("levels", 0, "rule", "lr") and "too large" in diag.message
    assert "lr <= 0.00625" in diag.hint


def test_a_memory_needs_its_own_level():
    d = data()
    d["levels"] = [lv for lv in d["levels"] if lv["name"] != "memory"]
    diags = errors(d)
    assert [x.path for x in diags] == [("modules", "mem")]
    assert "has no memory level" in diags[0].message


def test_a_memory_rate_must_come_from_its_own_module():
    d = data()
    level(d, "memory")["rule"]["lr"] = "mem.eta"
    (diag,) = errors(d)
    assert diag.path == ("levels", 0, "rule", "lr") and "produces no value 'eta'" in diag.message
    assert "lr" in diag.hint


def test_next_token_level_cannot_own_a_memory():
    d = data()
    level(d, "memory").update(objective="next_token", rule={"type": "gd", "lr": 0.01})
    messages = [x.message for x in errors(d)]
    assert any("is a memory, written by its module's rule" in m for m in messages)


def test_memory_chunk_must_divide_the_engine_chunk():
    d = data()
    d["modules"]["mlp"] = {"type": "mlp_chain", "blocks": {"fast": {"expand": 2}}}
    d["levels"].insert(1, {"name": "fast", "owns": "mlp.fast", "every": "8 tokens",
                           "context": "tokens", "objective": "next_token",
                           "rule": {"type": "gd", "lr": 0.01}, "lifetime": "sequence"})
    (diag,) = errors(d)
    assert diag.path == ("levels", 0, "every") and "does not divide" in diag.message


def test_a_memory_chunk_longer_than_a_sequence_is_refused():
    d = data()
    d["train"]["seq_len"] = 8
    (diag,) = errors(d)
    assert diag.path == ("levels", 0, "every") and "would never change a pred" in diag.message


def test_a_memory_rate_cannot_drive_a_gradient_level():
    from nestgraph.errors import CompileError

    d = data()
    d["modules"]["mlp"] = {"type": "mlp_chain", "blocks": {"fast": {"expand": 2}}}
    d["levels"].insert(1, {"name": "fast", "owns": "mlp.fast", "every": "16 tokens",
                           "context": "tokens", "objective": "next_token",
                           "rule": {"type": "gd", "lr": "mem.lr"}, "lifetime": "sequence"})
    with pytest.raises(CompileError, match="makes no step sizes for in-context levels"):
        compile_spec(d)


def test_a_mac_memory_writes_whole_chunks_to_a_segment():
    d, _ = read_document("titans-mac")
    d["modules"]["mac"]["segment"] = 40
    (diag,) = errors(d)
    assert diag.path == ("levels", 1, "every")
    assert "does not divide the 40-token segments of 'mac'" in diag.message
    assert "e.g. 8 tokens" in diag.hint


def test_a_mac_segment_as_long_as_the_sequence_is_refused():
    # Every sequence would be one segment: the recall would read only the initial memory.
    d, _ = read_document("titans-mac")
    d["train"]["seq_len"] = 64
    (diag,) = errors(d)
    assert diag.path == ("modules", "mac", "segment")
    assert "recalls only its initial memory" in diag.message and "e.g. 16 tokens" in diag.hint
