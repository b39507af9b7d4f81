"""Data-dependent CMS step sizes: what the compiler accepts, refuses, and writes."""

from __future__ import annotations

import copy

import pytest

from nestgraph.compiler import compile_spec
from nestgraph.errors import CompileError, SpecError
from nestgraph.spec import read_document

BASE, _ = read_document("ablations/hope-cms-step-sizes")


def data():
    return copy.deepcopy(BASE)


def level(d, name):
    return next(lv for lv in d["levels"] if lv["name"] == name)


def test_the_levels_read_their_blocks_step_sizes():
    result = compile_spec(data())
    fast = next(lv for lv in result.plan["levels"] if lv["name"] == "cms_fast")
    assert fast["step_sizes"] == ["layers.0.blocks.cms.body.rates.fast",
                                  "layers.1.blocks.cms.body.rates.fast"]
    slow = next(lv for lv in result.plan["levels"] if lv["name"] == "cms_slow")
    assert "step_sizes" not in slow
    outer = next(lv for lv in result.plan["levels"] if lv["name"] == "outer")
    assert "layers.0.blocks.cms.body.rates" in outer["modules"]  # trained by the outer level
    assert "step_sizes=('fast', 'mid')" in result.program


def test_a_block_without_a_step_size_is_refused():
    d = data()
    d["modules"]["cms"]["blocks"]["mid"]["step_size"] = False
    with pytest.raises(CompileError, match="weights the gradients of its blocks with step_size"):
        compile_spec(d)


def test_a_step_size_nobody_takes_is_refused():
    d = data()
    level(d, "cms_mid")["rule"] = {"type": "gd", "lr": 0.01}
    with pytest.raises(CompileError, match="block 'cms.mid' makes a step size, but its level "
                       "'cms_mid' does not take it"):
        compile_spec(d)


@pytest.mark.parametrize("change", [{"meta": "first_order"}, {"lifetime": "stream"}])
def test_a_level_that_cuts_the_read_outs_path_is_refused(change):
    d = data()
    level(d, "cms_fast").update(change)
    with pytest.raises(CompileError, match="learned through its in-context update"):
        compile_spec(d)


def test_the_read_outs_belong_to_a_step_level():
    # An in-context level cannot own them (they are not fast weights): the forward pass never
    # reads them, so only a step level, through the update, could train them.
    d = data()
    level(d, "cms_fast")["owns"] = ["cms.fast", "cms.rates"]
    with pytest.raises(SpecError) as err:
        compile_spec(d)
    (diag,) = err.value.diagnostics
    assert "'cms.rates' (mlp_chain) cannot be updated in context" in diag.message


def test_an_unowned_stepped_block_is_named_as_such():
    d = data()
    d["levels"] = [lv for lv in d["levels"] if lv["name"] != "cms_mid"]
    level(d, "outer")["owns"] = "rest"
    with pytest.raises(CompileError) as err:
        compile_spec(d)
    assert "no level owns it" in str(err.value) or "does not take it" in str(err.value)


def test_max_lr_beside_a_constant_lr_is_a_warning():
    from nestgraph.compiler import check_document
    from nestgraph.compiler.ir import facts

    d = data()
    level(d, "cms_slow")["rule"]["max_lr"] = 0.1
    warnings = facts(check_document(d)[1]).warnings
    assert [(w.code, w.path) for w in warnings] == [
        ("W-UNUSED", ("levels", next(i for i, lv in enumerate(d["levels"])
                                      if lv["name"] == "cms_slow"), "rule", "max_lr"))]
