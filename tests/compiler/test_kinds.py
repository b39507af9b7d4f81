"""The kinds registry agrees with the schema and the runtime: every record has its schema model,
and each rule's runtime dataclass takes exactly the schema's fields with the schema's defaults
(a default stated twice is a default that can drift)."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

import nestgraph.runtime.levels as runtime_levels
from nestgraph.compiler.kinds import MODULE_KINDS, RULE_KINDS
from nestgraph.spec.schema import MODULE_MODELS, RULE_MODELS, tag_of


def _runtime_defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = dataclasses.MISSING
    return out


def _schema_defaults(model) -> dict:
    return {name: dataclasses.MISSING if field.is_required() else field.get_default()
            for name, field in model.model_fields.items() if name != "type"}


def _same(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    return a == b


def test_every_record_has_its_schema_model_and_back():
    assert {tag_of(m) for m in MODULE_MODELS} == set(MODULE_KINDS)
    assert {tag_of(m) for m in RULE_MODELS} == set(RULE_KINDS)


@pytest.mark.parametrize("tag", sorted(RULE_KINDS))
def test_a_rules_runtime_fields_and_defaults_are_the_schemas(tag):
    runtime = getattr(runtime_levels, RULE_KINDS[tag].runtime)
    (model,) = [m for m in RULE_MODELS if tag_of(m) == tag]
    ours, theirs = _runtime_defaults(runtime), _schema_defaults(model)
    assert set(ours) == set(theirs), f"fields differ: {set(ours) ^ set(theirs)}"
    drifted = {n: (ours[n], theirs[n]) for n in ours
               if ours[n] is not dataclasses.MISSING and not _same(ours[n], theirs[n])}
    assert not drifted, f"defaults differ (runtime, schema): {drifted}"


@pytest.mark.parametrize("tag", sorted(MODULE_KINDS))
def test_a_module_kinds_runtime_imports_exist(tag):
    for path, alias in MODULE_KINDS[tag].imports:
        assert alias.isidentifier()
        importlib.import_module(path)


def test_step_rules_build_their_own_optimizer():
    # A step rule's runtime class carries its optimizer, so adding one touches no dispatcher.
    for tag, kind in RULE_KINDS.items():
        if kind.step and kind.level_kind is None:
            assert callable(getattr(getattr(runtime_levels, kind.runtime), "optimizer", None)), tag
