"""The .ng front end: the same plain data as the YAML, with every entry placed in the .ng text."""

from __future__ import annotations

import pytest

from nestgraph.compiler import check_document
from nestgraph.errors import SpecError
from nestgraph.spec.dsl_front import load_dsl, parse_dsl
from nestgraph.spec.schema import Spec
from nestgraph.spec.source import format_diagnostics
from nestgraph.spec.yaml_front import load_yaml
from nestgraph.testing import MINIMAL_SPEC

MINIMAL_NG = """\
nestgraph 1
spec t
model: block [attn, mlp]
module attn = attention()
module mlp = mlp()
level outer every 1 step on corpus:
    owns rest
    minimise next_token by adamw(lr=1e-3)
    lifetime run
"""


def test_the_minimal_spec_reads_as_its_yaml_does() -> None:
    ng, _ = load_dsl(MINIMAL_NG, "t.ng")
    yaml_data, _ = load_yaml(MINIMAL_SPEC, "t.yaml")
    assert ng == yaml_data
    assert Spec.model_validate(ng) == Spec.model_validate(yaml_data)


def test_values() -> None:
    data, _ = load_dsl(
        'nestgraph 1\nmodule m = t(a=1, b=-2.5e-3, c="x y", d=true, e=false, f=null, g=word,\n'
        "  h=mod.part, i=[1, [2]], j={k: 1, \"l m\": 2}, n=u(v=1),)\n", "t.ng")
    assert data["modules"]["m"] == {
        "type": "t", "a": 1, "b": -2.5e-3, "c": "x y", "d": True, "e": False, "f": None,
        "g": "word", "h": "mod.part", "i": [1, [2]], "j": {"k": 1, "l m": 2},
        "n": {"type": "u", "v": 1}}


def test_level_header_and_clauses() -> None:
    data, _ = load_dsl("level l every 16 tokens on gradients of outer: owns [a.b, c],\n"
                       "  minimize l2(values=self) by dgd(lr=m.lr) lifetime sequence, "
                       "meta first_order\n", "t.ng")
    assert data["levels"] == [{
        "name": "l", "every": "16 tokens", "context": "gradients of outer", "owns": ["a.b", "c"],
        "objective": {"type": "l2", "values": "self"}, "rule": {"type": "dgd", "lr": "m.lr"},
        "lifetime": "sequence", "meta": "first_order"}]


def test_keywords_are_names_where_no_keyword_can_stand() -> None:
    data, _ = load_dsl("model: block [data, level]\nmodule data = mlp(on=1)\n"
                       "module level = mlp()\n", "t.ng")
    assert data["model"]["block"] == ["data", "level"]
    assert set(data["modules"]) == {"data", "level"}
    assert data["modules"]["data"]["on"] == 1


def test_statements_gather_in_any_order() -> None:
    data, _ = load_dsl("train: steps 3\nlevel b: owns x\nmodule m = mlp()\nlevel a: owns y\n"
                       "nestgraph 1\n", "t.ng")
    assert list(data) == ["train", "levels", "modules", "nestgraph"]
    assert [lv["name"] for lv in data["levels"]] == ["b", "a"]


def test_every_entry_is_placed() -> None:
    _, source = load_dsl(MINIMAL_NG, "t.ng")
    assert source.keys[("levels", 0, "every")].line == 6
    assert source.values[("levels", 0, "every")].col == 19  # "1 step"
    assert source.values[("levels", 0, "rule", "lr")].line == 8
    assert source.values[("modules", "mlp")].col == 14


def test_a_duplicate_is_an_error_that_names_the_first() -> None:
    with pytest.raises(SpecError) as caught:
        load_dsl("module a = mlp()\nmodule a = mlp(expand=2)\ntrain: steps 1, steps 2\n", "t.ng")
    text = format_diagnostics(caught.value.diagnostics, caught.value.source)
    assert "t.ng:2:8: error[E-DSL]: 'a' is given twice" in text
    assert "'a' is first given at t.ng:1:8" in text
    assert "t.ng:3:17: error[E-DSL]: 'steps' is given twice" in text


def test_semantic_errors_point_into_the_ng_text() -> None:
    text = MINIMAL_NG.replace("every 1 step", "every 0 steps").replace("lr=1e-3", "lr=-1")
    data, source = load_dsl(text, "t.ng")
    with pytest.raises(SpecError) as caught:
        check_document(data, source)
    shown = format_diagnostics(caught.value.diagnostics, caught.value.source)
    assert "t.ng:6:19: error[E-SCHEMA]" in shown  # the period
    assert "t.ng:8:37: error[E-SCHEMA]" in shown  # lr=-1


def test_comments_are_collected_with_their_place() -> None:
    parsed = parse_dsl("# head\nnestgraph 1  # version\n", "t.ng")
    assert [(c.line, c.text, c.own_line) for c in parsed.comments] == [
        (1, "head", True), (2, "version", False)]


def test_positions_count_lines_as_the_parser_does() -> None:
    # U+2028 is not a line break in .ng (in YAML it is); a lone CR is one, as in CRLF files
    for text in ("nestgraph 1\nspec x # a\u2028b\nmodel: dim 64\nmodule m = mlp(expand=)\n",
                 "nestgraph 1\rspec x\rmodel: dim 64\rmodule m = mlp(expand=)\r"):
        with pytest.raises(SpecError) as caught:
            load_dsl(text, "t.ng")
        shown = format_diagnostics(caught.value.diagnostics, caught.value.source)
        assert shown.startswith("t.ng:4:23: error[E-DSL]")
        assert "4 | module m = mlp(expand=)" in shown
