"""`validate` and `compile` give one verdict: what compile would refuse for a reason the spec
shows, validate refuses too, positioned at the entry to change (exit code 3 from both)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nestgraph.cli import app
from nestgraph.errors import EXIT_SPEC
from nestgraph.testing import level_of, only_diagnostic, shipped_data, validated_graph

runner = CliRunner()
SPECS = Path(__file__).resolve().parents[2] / "specs"


def both_refuse(tmp_path: Path, old: str, new: str, spec: str = "transformer.yaml") -> str:
    """`validate` and `compile` of the shipped spec with `old` replaced: the same positioned
    error from both, exit code 3. Returns what validate printed."""
    text = (SPECS / spec).read_text()
    assert text.count(old) == 1, old
    changed = text.replace(old, new)
    path = tmp_path / spec
    path.write_text(changed)
    line = 1 + changed[:changed.index(new) + len(new.rstrip())].count("\n")  # new's last line
    outputs = []
    for command in (["validate", str(path)], ["compile", str(path), "-o", str(tmp_path / "b")]):
        result = runner.invoke(app, command)
        assert result.exit_code == EXIT_SPEC, (command, result.output)
        assert re.search(rf"{re.escape(spec)}:{line}:\d+: error\[E-", result.output), \
            result.output
        assert "help:" in result.output and "internal" not in result.output, result.output
        outputs.append(result.output[result.output.index(spec):])
    assert outputs[0] == outputs[1]
    assert not (tmp_path / "b").exists()
    return outputs[0]


def test_heads_that_do_not_divide_dim(tmp_path: Path) -> None:
    shown = both_refuse(tmp_path, "attn: {type: attention, heads: 4}",
                        "attn: {type: attention, heads: 3}")
    assert "does not divide" in shown and "64" in shown


def test_heads_of_a_memory_module(tmp_path: Path) -> None:
    shown = both_refuse(tmp_path, "    heads: 4\n", "    heads: 5\n", "titans.yaml")
    assert "e.g. 4" in shown


def test_heads_diagnostic_is_at_the_heads() -> None:
    data = shipped_data("transformer")
    data["modules"]["attn"]["heads"] = 6
    d = only_diagnostic(validated_graph(data))
    assert d.path == ("modules", "attn", "heads") and d.code == "E-SHAPE"
    assert d.hint == "use heads that divide 64, e.g. 8"


def test_output_of_a_level_is_refused_by_validate(tmp_path: Path) -> None:
    shown = both_refuse(tmp_path, "    every: 16 tokens\n    context: tokens\n",
                        "    every: 16 tokens\n    context: output of attention\n", "cms.yaml")
    assert "'output of attention'" in shown and "context: tokens" in shown


@pytest.mark.parametrize(("name", "hint"), [("cms_fast", "context: tokens"),
                                            ("outer", "context: corpus")])
def test_output_of_diagnostic_is_at_the_context(name: str, hint: str) -> None:
    data = shipped_data("cms")
    level_of(data, name)["context"] = "output of attention"
    d = only_diagnostic(validated_graph(data))
    index = [lv["name"] for lv in data["levels"]].index(name)
    assert d.path == ("levels", index, "context") and d.code == "E-LEVEL"
    assert hint in d.hint
