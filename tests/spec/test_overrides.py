"""Command-line overrides: addressing, YAML values, deletion, and errors that name the override."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nestgraph.errors import Diagnostic, SpecError
from nestgraph.spec.overrides import apply_overrides
from nestgraph.spec.source import SourceFile, Span, format_diagnostic, format_diagnostics
from nestgraph.spec.yaml_front import load_yaml
from nestgraph.testing import MINIMAL_SPEC

SPEC = MINIMAL_SPEC + """\
  - name: cms_fast
    owns: mlp
    every: 16 tokens
    context: tokens
    objective: next_token
    rule: {type: gd, lr: 1e-2}
    lifetime: sequence
"""


def apply(*overrides: str) -> tuple[dict[str, Any], SourceFile]:
    data, source = load_yaml(SPEC, "t.yaml")
    return apply_overrides(data, source, list(overrides)), source


def failures(*overrides: str) -> tuple[list[Diagnostic], str]:
    data, source = load_yaml(SPEC, "t.yaml")
    with pytest.raises(SpecError) as caught:
        apply_overrides(data, source, list(overrides))
    assert caught.value.source is source
    return caught.value.diagnostics, format_diagnostics(caught.value.diagnostics, source)


def test_level_by_name_and_by_index() -> None:
    data, source = apply("levels.cms_fast.every=32 tokens", "levels.0.rule.lr=0.1")
    assert data["levels"][1]["every"] == "32 tokens"
    assert data["levels"][0]["rule"] == {"type": "adamw", "lr": 0.1}
    assert source.overrides == {
        ("levels", 1, "every"): (1, "levels.cms_fast.every=32 tokens"),
        ("levels", 0, "rule", "lr"): (2, "levels.0.rule.lr=0.1"),
    }


def test_values_are_read_as_yaml() -> None:
    data, _ = apply("train.steps=20", "model.block=[attn, mlp, attn]", "levels.1.rule.lr=3e-4",
                    "about='1e-3'", "train.seed=~")
    assert data["train"]["steps"] == 20
    assert data["model"]["block"] == ["attn", "mlp", "attn"]
    assert data["levels"][1]["rule"]["lr"] == 0.0003
    assert data["about"] == "1e-3"
    assert data["train"]["seed"] is None


def test_missing_key_is_added_and_a_schema_section_is_started() -> None:
    # The spec has no `train:` or `data:`; the schema has them, with defaults to override.
    data, source = apply("train.steps=5", "levels.outer.meta=first_order", "data.heldout=0.1")
    assert data["train"] == {"steps": 5}
    assert data["levels"][0]["meta"] == "first_order"
    assert data["data"] == {"heldout": 0.1}
    assert source.overrides[("train", "steps")] == (1, "train.steps=5")


def test_delete_a_key() -> None:
    data, source = apply("~levels.outer.rule.lr")
    assert data["levels"][0]["rule"] == {"type": "adamw"}
    assert source.overrides[("levels", 0, "rule", "lr")] == (1, "~levels.outer.rule.lr")


def test_delete_a_level_renumbers_the_source_map() -> None:
    _, before = load_yaml(SPEC, "t.yaml")
    data, source = apply("~levels.outer", "levels.0.every=8 tokens")
    assert [level["name"] for level in data["levels"]] == ["cms_fast"]
    assert source.values[("levels", 0, "name")] == before.values[("levels", 1, "name")]
    assert ("levels", 1, "name") not in source.values
    assert source.overrides == {("levels", 0, "every"): (2, "levels.0.every=8 tokens")}


def test_the_input_is_not_mutated() -> None:
    data, source = load_yaml(SPEC, "t.yaml")
    original = copy.deepcopy(data)
    result = apply_overrides(data, source, ["levels.0.rule.lr=5", "~levels.cms_fast.owns"])
    assert data == original
    assert result["levels"][0]["rule"]["lr"] == 5
    assert result["levels"][0]["rule"] is not data["levels"][0]["rule"]


def test_no_overrides_gives_an_equal_copy() -> None:
    data, source = load_yaml(SPEC, "t.yaml")
    result = apply_overrides(data, source, [])
    assert result == data and result is not data and source.overrides == {}


def test_unknown_level_name() -> None:
    (d,), report = failures("levels.cms_fsat.every=32 tokens")
    assert d.message == "no level named 'cms_fsat' in levels"
    assert d.hint == "did you mean 'cms_fast'?"
    assert d.notes == ("the names are: outer, cms_fast (or use an index)",)
    assert report.splitlines()[0] == (
        "override #1 'levels.cms_fsat.every=32 tokens': error[E-OVERRIDE]: "
        "no level named 'cms_fsat' in levels"
    )


def test_missing_intermediate_mapping() -> None:
    (d,), _ = failures("trian.steps=5")
    assert d.message == "there is no key 'trian' at the top level"
    assert d.hint == "did you mean 'train'?"
    (d,), _ = failures("levels.outer.rul.lr=1")
    assert d.message == "there is no key 'rul' in level 'outer'"
    assert d.hint == "did you mean 'rule'?"


def test_deleting_what_is_not_there() -> None:
    (d,), _ = failures("~levels.outer.rule.lrr")
    assert d.message == "there is no key 'lrr' in rule of level 'outer'"
    assert d.hint == "did you mean 'lr'?"


def test_index_out_of_range_and_key_inside_a_scalar() -> None:
    diagnostics, _ = failures("levels.5.every=1 step", "name.x=1")
    assert [d.message for d in diagnostics] == [
        "levels has 2 entries: there is no entry 5",
        "'name' at the top level is a string, so it has no key 'x'",
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.steps", "an override is written path=value"),
        ("~train.steps=3", "a deletion takes no value"),
        ("train..steps=3", "'train..steps' is not a path"),
        ("train.steps=", "no value after '='"),
        ("train.steps=[1,", "cannot read the value '[1,': invalid YAML"),
        ("train.steps=!!python/name:os.system", "tag '!!python/name:os.system' is not allowed"),
    ],
)
def test_malformed_overrides(override: str, message: str) -> None:
    (d,), report = failures(override)
    assert message in d.message
    assert report.startswith(f"override #1 '{override}': error[E-OVERRIDE]: ")


def test_all_override_errors_are_collected_and_numbered() -> None:
    diagnostics, report = failures("train.steps=3", "levels.x.every=1", "oops", "trian.seed=1")
    assert len(diagnostics) == 3
    heads = [line.split(": error")[0] for line in report.splitlines() if ": error" in line]
    assert heads == [
        "override #2 'levels.x.every=1'",
        "override #3 'oops'",
        "override #4 'trian.seed=1'",
    ]
    assert report.endswith("3 errors")


def test_later_errors_on_an_overridden_value_name_the_override() -> None:
    _, source = apply("train.steps=abc")
    d = Diagnostic("'steps' in train: input should be a valid integer", ("train", "steps"))
    assert format_diagnostic(d, source) == (
        "override #1 'train.steps=abc': error: 'steps' in train: input should be a valid integer"
    )
    # Entries the override did not touch still point into the file.
    assert source.locate(("levels", 0, "rule", "lr")) == Span(14, 29, 33)
