"""Self-modifying Titans levels (Hope): DGD rule, two memories, self-made values."""

from __future__ import annotations

import copy

from nestgraph.compiler import compile_spec
from nestgraph.spec import read_document
from nestgraph.testing import built, flat, shipped_data
from nestgraph.testing import level_of as level
from nestgraph.testing import spec_errors as errors


def data():
    return shipped_data("hope")


def test_hope_plan_and_program():
    result = compile_spec(data())
    kinds = {lv["name"]: lv["kind"] for lv in result.plan["levels"]}
    assert kinds["projections"] == kinds["memory"] == "memory"
    outer = next(lv for lv in result.plan["levels"] if lv["name"] == "outer")
    assert {"selfmod.memory", "selfmod.projections"} <= set(outer["initial_states"])
    assert "S.SelfModifyingTitans(dim=64, heads=4, kind='mlp'" in flat(result.program)
    # Each memory takes its chunk and rates from the level that owns it (stated in SCHEDULE).
    assert "self_values=True" in flat(result.program) and "chunk=" not in result.program
    selfmod = built(result.program).get_submodule("layers.0.blocks.selfmod.body")
    assert (selfmod.chunk, selfmod.proj_chunk) == (32, 8)
    assert selfmod.rates == {"main": (None, None, 0.03), "proj": (None, None, 0.1)}
    assert "from nestgraph.runtime.layers import selfmod as S" in flat(result.program)
    assert "values: self" in result.resolved_yaml


def test_a_self_modifying_memory_may_learn_by_plain_gd_but_keeps_no_projection_momentum():
    # NL Table 6's "DGD -> plain GD" row: the Titans rule is accepted on every memory; the
    # projection memories keep no momentum state, so a momentum there is refused.
    d = data()
    level(d, "memory")["rule"] = {"type": "titans", "lr": 0.001, "momentum": 0.5}
    level(d, "projections")["rule"] = {"type": "titans", "lr": 0.01}
    selfmod = built(compile_spec(d).program).get_submodule("layers.0.blocks.selfmod.body")
    assert (selfmod.main_rule, selfmod.momentum, selfmod.proj_rule) == ("titans", 0.5, "titans")
    level(d, "projections")["rule"]["momentum"] = 0.5
    (diag,) = errors(d)
    assert diag.path[-2:] == ("rule", "momentum")
    assert "keeps no momentum state" in diag.message and "dgd" in diag.hint


def test_an_in_context_rule_on_a_self_modifying_memory_is_refused():
    d = data()
    level(d, "memory")["rule"] = {"type": "gd", "lr": 0.01}
    diags = errors(d)
    assert any("cannot be updated in context" in x.message for x in diags), diags
    assert any("rule: {type: dgd" in x.hint for x in diags), diags


def test_projection_memories_need_their_own_level():
    d = data()
    d["levels"] = [lv for lv in d["levels"] if lv["name"] != "projections"]
    (diag,) = errors(d)
    assert diag.message == "the projection memories of module 'selfmod' has no memory level"
    assert "owns: selfmod.projections" in diag.hint and "type: dgd" in diag.hint


def test_dgd_has_no_momentum_rate():
    d = data()
    level(d, "memory")["rule"]["momentum"] = "selfmod.momentum"
    (diag,) = errors(d)
    assert diag.path == ("levels", 1, "rule", "momentum")


def test_self_modifying_titans_produces_lr_and_forget_only():
    d = data()
    level(d, "memory")["rule"]["lr"] = "selfmod.eta"
    (diag,) = errors(d)
    assert "produces no value 'eta'" in diag.message
    assert diag.hint == "module 'selfmod' produces lr, forget"


def test_dgd_step_size_is_held_to_the_stability_bound():
    d = data()
    level(d, "memory")["rule"]["max_lr"] = 0.5
    (diag,) = errors(d)
    assert diag.message == ("level 'memory': every 32 tokens at lr up to 0.5, one memory step "
                            "can be 16 times too large to stay stable")
    assert diag.hint == "use max_lr <= 0.0312 (chunk x lr <= 1)"


def test_dgd_drives_a_neural_memory_too():
    d, _ = read_document("titans")
    d = copy.deepcopy(d)
    level(d, "memory")["rule"] = {"type": "dgd", "lr": "mem.lr", "forget": "mem.forget",
                                  "max_lr": 0.05}
    level(d, "memory")["objective"] = {"type": "l2", "values": "self"}
    result = compile_spec(d)
    assert "self_values=True" in flat(result.program)
    assert built(result.program).get_submodule("layers.0.blocks.mem.body").rule == "dgd"
