"""pydantic errors become diagnostics with document paths, human messages and did-you-means."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from nestgraph.errors import Diagnostic
from nestgraph.spec.schema import AdamW, Spec
from nestgraph.spec.schema_walk import document_path, model_at
from nestgraph.spec.source import SourceFile, format_diagnostic, format_diagnostics
from nestgraph.spec.validation import describe, diagnostics_from_pydantic, subject, where
from nestgraph.spec.yaml_front import load_yaml

HEAD = """\
nestgraph: 1
name: t
model:
  block: [attn, mlp]
modules:
  attn: {type: attention}
  mlp: {type: mlp}
"""

LEVEL = """\
levels:
  - name: outer
    owns: rest
    every: 1 step
    context: corpus
    objective: next_token
    rule: {type: adamw, lr: 1e-3}
    lifetime: run
"""


def diagnose(text: str) -> tuple[list[Diagnostic], SourceFile, Any]:
    data, source = load_yaml(text, "t.yaml")
    with pytest.raises(ValidationError) as caught:
        Spec.model_validate(data)
    return diagnostics_from_pydantic(caught.value, data), source, data


def one(text: str) -> tuple[Diagnostic, str]:
    diagnostics, source, _ = diagnose(text)
    assert len(diagnostics) == 1, diagnostics
    return diagnostics[0], format_diagnostic(diagnostics[0], source)


def test_the_minimal_spec_is_valid() -> None:
    data, _ = load_yaml(HEAD + LEVEL, "t.yaml")
    spec = Spec.model_validate(data)
    assert spec.levels[0].rule.lr == 0.001


def test_unknown_key_in_a_tagged_union_member() -> None:
    d, text = one(HEAD + LEVEL.replace("lr: 1e-3", "lr: 1e-3, lrr: 2"))
    assert d.path == ("levels", 0, "rule", "lrr")  # pydantic's loc has 'adamw' in it
    assert d.part == "key"
    assert d.message == "unknown key 'lrr' in rule of level 'outer'"
    assert d.hint == "did you mean 'lr'?"
    assert d.notes == (f"allowed keys: {', '.join(AdamW.model_fields)}",)
    assert text.splitlines()[0].startswith("t.yaml:14:35: error[E-SCHEMA]: unknown key 'lrr'")
    assert text.splitlines()[3] == "   |                                   ^^^"


def test_misspelt_key_gets_missing_key_and_did_you_mean() -> None:
    diagnostics, source, _ = diagnose(HEAD + LEVEL.replace("lr: 1e-3", "lrr: 1e-3"))
    messages = {d.message: d for d in diagnostics}
    assert set(messages) == {
        "missing key 'lr' in rule of level 'outer'",
        "unknown key 'lrr' in rule of level 'outer'",
    }
    assert messages["unknown key 'lrr' in rule of level 'outer'"].hint == "did you mean 'lr'?"
    report = format_diagnostics(diagnostics, source)
    assert report.splitlines()[0] == (
        "t.yaml:14:5: error[E-SCHEMA]: missing key 'lr' in rule of level 'outer'"
    )
    assert report.endswith("2 errors")


def test_did_you_mean_also_considers_keys_already_written() -> None:
    d, _ = one(HEAD + LEVEL + "train: {steps: 3, stpes: 4}\n")
    assert d.message == "unknown key 'stpes' in train"
    assert d.hint == "did you mean 'steps'?"


def test_unknown_key_at_the_top_level_and_in_model() -> None:
    diagnostics, _, _ = diagnose(HEAD.replace("block:", "blok:") + LEVEL + "trian: {}\n")
    by_message = {d.message: d.hint for d in diagnostics}
    assert by_message["unknown key 'blok' in model"] == "did you mean 'block'?"
    assert by_message["unknown key 'trian' at the top level"] == "did you mean 'train'?"


def test_unknown_module_type() -> None:
    d, text = one(HEAD.replace("type: attention", "type: atention") + LEVEL)
    assert d.message == "unknown module type 'atention' for module 'attn'"
    assert d.path == ("modules", "attn", "type")
    assert d.hint == "did you mean 'attention'?"
    assert d.notes == ("known: attention, mlp, mlp_chain, neural_memory, memory_as_gate, "
                       "memory_as_context, self_modifying_titans",)
    assert text.startswith("t.yaml:6:16: error[E-SCHEMA]")


def test_unknown_rule_type_and_objective_shorthand() -> None:
    text = HEAD + LEVEL.replace("type: adamw", "type: adam").replace("next_token", "next_tok")
    diagnostics, source, _ = diagnose(text)
    assert [(d.message, d.hint) for d in diagnostics] == [
        ("unknown objective 'next_tok' in level 'outer'", "did you mean 'next_token'?"),
        ("unknown rule type 'adam' in level 'outer'", "did you mean 'adamw'?"),
    ]
    assert source.locate(diagnostics[0].path) == source.values[("levels", 0, "objective")]
    assert diagnostics[1].path == ("levels", 0, "rule", "type")


def test_missing_type() -> None:
    d, text = one(HEAD.replace("{type: mlp}", "{expand: 2}") + LEVEL)
    assert d.message == "missing 'type' in module 'mlp'"
    assert d.hint == ("add 'type:' with one of: attention, mlp, mlp_chain, neural_memory, "
                      "memory_as_gate, memory_as_context, self_modifying_titans")
    assert text.startswith("t.yaml:7:3:")


def test_missing_key_names_the_level_and_points_at_it() -> None:
    d, text = one(HEAD + LEVEL.replace("    lifetime: run\n", ""))
    assert d.message == "missing key 'lifetime' in level 'outer'"
    assert d.hint == "add 'lifetime:' with one of: sequence, stream, run"
    assert text.startswith("t.yaml:9:5: error[E-SCHEMA]: missing key 'lifetime' in level 'outer'")


def test_missing_top_level_key() -> None:
    d, text = one(HEAD.replace("name: t\n", "") + LEVEL)
    assert d.message == "missing key 'name' at the top level"
    assert text.startswith("t.yaml:1:1:")


def test_literal_error_lists_choices_and_suggests() -> None:
    d, text = one(HEAD + LEVEL.replace("lifetime: run", "lifetime: runn"))
    assert d.message == "'lifetime' in level 'outer': 'runn' is not one of: sequence, stream, run"
    assert d.hint == "did you mean 'run'?"
    assert text.startswith("t.yaml:15:15:")


def test_value_error_prefix_is_stripped() -> None:
    d, text = one(HEAD + LEVEL.replace("every: 1 step", "every: 16"))
    assert d.message == "a period needs a unit: write '16 tokens' or '16 steps'"
    assert text.startswith("t.yaml:11:12:")


def test_invalid_name_as_a_key_points_at_the_key() -> None:
    modules = HEAD.replace("  mlp: {type: mlp}", "  mlp: {type: mlp}\n  Big: {type: mlp}")
    d, text = one(modules + LEVEL)
    assert d.message.startswith("'Big' is not a valid name")
    assert d.path == ("modules", "Big") and d.part == "key"
    assert text.splitlines()[3] == "  |   ^^^"


def test_bounds_and_types_say_which_key() -> None:
    diagnostics, _, _ = diagnose(HEAD + LEVEL + "train: {steps: -1, batch: many}\n")
    assert [d.message for d in diagnostics] == [
        "'steps' in train: -1 is out of range: it must be at least 0 and at most 1,000,000,000",
        "'batch' in train: input should be a valid integer, unable to parse string as an "
        "integer (got 'many')",
    ]


def test_a_value_fitting_no_member_of_a_plain_union_is_one_error() -> None:
    d, _ = one(HEAD + LEVEL.replace("{type: adamw, lr: 1e-3}", "{type: gd, lr: [1]}"))
    assert d.message == "'lr' in rule of level 'outer' must be a number or a string, not a list"
    assert d.path == ("levels", 0, "rule", "lr")


def test_a_mapping_written_as_a_word() -> None:
    d, _ = one(HEAD.replace("attn: {type: attention}", "attn: attention") + LEVEL)
    assert d.message == "module 'attn' must be a mapping of keys, not a string"
    assert d.hint == "write it as a mapping: {type: attention, ...}"


def test_a_rule_without_settings_may_be_written_as_its_name() -> None:
    d, _ = one(HEAD + LEVEL.replace("{type: adamw, lr: 1e-3}", "adamw"))
    assert d.message == "missing key 'lr' in rule of level 'outer'"


def test_list_entries_are_named() -> None:
    d, _ = one(HEAD + LEVEL.replace("owns: rest", "owns: [rest, 3]"))
    assert d.message == "owns[1] of level 'outer': input should be a valid string (got 3)"


def test_unsupported_version() -> None:
    d, _ = one(HEAD.replace("nestgraph: 1", "nestgraph: 2") + LEVEL)
    assert d.message == "unsupported spec format version 2: this nestgraph reads version 1"
    assert d.hint == "write 'nestgraph: 1'"


def test_every_error_is_converted() -> None:
    text = (
        HEAD.replace("type: attention", "type: atention").replace("name: t", "name: T")
        + LEVEL.replace("lifetime: run", "lifetime: forever").replace("lr: 1e-3", "lr: -1")
        + "data: {heldout: 2}\n"
    )
    data, _ = load_yaml(text, "t.yaml")
    with pytest.raises(ValidationError) as caught:
        Spec.model_validate(data)
    diagnostics = diagnostics_from_pydantic(caught.value, data)
    assert len(diagnostics) == len(caught.value.errors()) == 5
    assert all(d.code == "E-SCHEMA" and d.message for d in diagnostics)


def test_phrases_for_places() -> None:
    data = {"levels": [{"name": "cms_fast"}, {}], "modules": {}}
    assert where((), data) == "at the top level"
    assert where(("train",), data) == "in train"
    assert where(("levels", 0), data) == "in level 'cms_fast'"
    assert where(("levels", 1), data) == "in levels[1]"
    assert describe(("levels", 0, "rule"), data) == "rule of level 'cms_fast'"
    assert describe(("modules", "cms", "blocks", "fast"), data) == "block 'fast' of module 'cms'"
    assert describe(("model", "block", 1), data) == "model.block[1]"
    assert subject(("train", "steps"), data) == "'steps' in train"
    assert subject(("modules", "attn"), data) == "module 'attn'"


def test_model_at_follows_the_type_tag() -> None:
    data = {"levels": [{"rule": {"type": "gd"}, "objective": "next_token"}]}
    assert model_at(("levels", 0, "rule"), data).__name__ == "GD"
    assert model_at(("levels", 0, "objective"), data).__name__ == "NextToken"
    assert model_at(("levels", 0), data).__name__ == "Level"
    assert model_at(("nowhere",), data) is None


def test_document_path_drops_tags_and_validator_names() -> None:
    data = {"levels": [{"rule": {"type": "adamw"}}], "modules": {"c": {"type": "mlp_chain"}}}
    assert document_path(("levels", 0, "rule", "adamw", "lrr"), data) == (
        "levels", 0, "rule", "lrr"
    )
    loc = ("modules", "c", "mlp_chain", "blocks", "A", "[key]")
    assert document_path(loc, data) == ("modules", "c", "blocks", "A")
    assert document_path(("levels", 0, "rule", "gd", "lr", "float"), data) == (
        "levels", 0, "rule", "lr"
    )
