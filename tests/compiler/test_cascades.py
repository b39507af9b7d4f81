"""One mistake, one diagnostic: errors that only follow from an earlier one are not reported.

A level the schema rejected is dropped (compiler/salvage.py) and remembered (`Lost`), so the
graph checks do not blame its absence; a level whose period is already reported does not set
the chunk other levels are checked against.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nestgraph import load_spec
from nestgraph.errors import SpecError
from nestgraph.spec import find_spec_file
from nestgraph.spec.source import format_diagnostics

HOPE = find_spec_file("hope").read_text(encoding="utf-8")


def _errors(tmp_path: Path, text: str) -> tuple[list, str]:
    path = tmp_path / "hope.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(str(path))
    return caught.value.diagnostics, format_diagnostics(caught.value.diagnostics,
                                                        caught.value.source)


def _slow_every(period: str) -> str:
    head, tail = HOPE.split("- name: cms_slow", 1)
    assert "every: 4096 tokens" in tail
    return head + "- name: cms_slow" + tail.replace("every: 4096 tokens", f"every: {period}", 1)


def test_a_typo_in_the_outer_rule_is_the_only_error(tmp_path: Path) -> None:
    text = HOPE.replace("rule: {type: adamw,", "rule: {type: adamww,")
    assert text != HOPE
    diagnostics, shown = _errors(tmp_path, text)
    assert len(diagnostics) == 1, shown
    assert "unknown rule type 'adamww' in level 'outer'" in shown
    assert "add an outer level" not in shown


@pytest.mark.parametrize("period", ["12 tokens", "100 tokens", "4000 tokens"])
def test_a_bad_period_on_cms_slow_is_the_only_error(tmp_path: Path, period: str) -> None:
    diagnostics, shown = _errors(tmp_path, _slow_every(period))
    assert len(diagnostics) == 1, shown
    assert f"level 'cms_slow' updates every {period}" in shown
    assert "divisor" not in shown


def test_a_fast_period_that_breaks_the_memory_chunks_names_the_level_changed(
    tmp_path: Path,
) -> None:
    # Nothing nests wrongly, but cms_slow every 4 tokens makes the in-context chunk 4 tokens,
    # which the memories' 8 and 32 do not divide: one error, at the level that was changed.
    diagnostics, shown = _errors(tmp_path, _slow_every("4 tokens"))
    assert len(diagnostics) == 1, shown
    assert "cms_slow" in shown.splitlines()[0]
    assert shown.splitlines()[0].split(":")[1] == str(
        _slow_every("4 tokens").splitlines().index("    every: 4 tokens") + 1)


def test_a_real_second_error_is_still_reported(tmp_path: Path) -> None:
    text = _slow_every("100 tokens").replace("rule: {type: adamw,", "rule: {type: adamww,")
    diagnostics, shown = _errors(tmp_path, text)
    assert len(diagnostics) == 2, shown


def test_the_period_hint_for_a_huge_period_is_an_exact_multiple(tmp_path: Path) -> None:
    period = 999_999_999  # the largest periods the schema allows are still hinted exactly
    diagnostics, shown = _errors(tmp_path, _slow_every(f"{period} tokens"))
    assert len(diagnostics) == 1, shown
    hint = int(shown.split("try ")[1].split(" tokens")[0])
    assert hint % 256 == 0 and abs(hint - period) <= 128


@pytest.mark.parametrize(("old", "new", "expected"), [
    # a memory level the schema rejects: its memory is not "without a memory level"
    ("rule: {type: dgd, lr: selfmod.lr, forget: selfmod.forget, max_lr: 0.03}",
     "rule: {type: dgdd, lr: selfmod.lr, forget: selfmod.forget, max_lr: 0.03}",
     "unknown rule type 'dgdd' in level 'memory'"),
    ("every: 8 tokens", "every: 8 tokenz", "'8 tokenz' is not a period"),
    # a module the schema rejects: the levels that own it are not "owning nothing"
    ("heads: 4", "heads: -1", "'heads' in module 'selfmod'"),
    # a misspelt module in the block: the module meant is not "unused"
    ("block: [selfmod, cms]", "block: [selfmod, cmss]",
     "model.block uses module 'cmss', which is not defined"),
], ids=["memory-rule", "memory-period", "module-field", "block-typo"])
def test_one_mistake_in_hope_gives_one_error(tmp_path: Path, old: str, new: str,
                                             expected: str) -> None:
    assert old in HOPE
    diagnostics, shown = _errors(tmp_path, HOPE.replace(old, new, 1))
    assert len(diagnostics) == 1, shown
    assert expected in shown
