"""nestgraph fmt: canonical text in either form, stable round trips, comments kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nestgraph.cli import app
from nestgraph.errors import SpecError
from nestgraph.fmt.format import convert
from nestgraph.spec import shipped_specs
from nestgraph.spec.source import format_diagnostics
from nestgraph.spec.yaml_front import load_yaml
from nestgraph.testing import MINIMAL_SPEC

runner = CliRunner()

COMMENTED = """\
# A spec with comments everywhere a person puts them.
nestgraph: 1
name: t  # the name

model:
  block: [attn, mlp]  # two sub-blocks

modules:
  attn: {type: attention}
  # the MLP
  mlp:
    type: mlp
    expand: 2  # narrow

levels:
  - name: outer  # the only level
    owns: rest
    every: 1 step
    context: corpus
    objective: next_token
    rule: {type: adamw, lr: 0.001}  # AdamW
    lifetime: run

# the end
"""


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _texts(yaml_text: str) -> tuple[str, str, str, str]:
    ng1 = convert(yaml_text, "t.yaml", "ng")
    yaml1 = convert(ng1, "t.ng", "yaml")
    ng2 = convert(yaml1, "t.yaml", "ng")
    yaml2 = convert(ng2, "t.ng", "yaml")
    return ng1, yaml1, ng2, yaml2


@pytest.mark.parametrize("name", sorted(shipped_specs()))
def test_round_trips_are_stable_after_the_first_pass(name: str) -> None:
    text = shipped_specs()[name].read_text(encoding="utf-8")
    ng1, yaml1, ng2, yaml2 = _texts(text)
    assert ng2 == ng1 and yaml2 == yaml1
    assert convert(ng1, "t.ng") == ng1 and convert(yaml1, "t.yaml") == yaml1


def test_comments_survive_both_ways() -> None:
    ng1, yaml1, _, _ = _texts(COMMENTED)
    for text in (ng1, yaml1):
        for comment in ("# A spec with comments", "# the name", "# two sub-blocks",
                        "# the MLP", "# narrow", "# the only level", "# AdamW", "# the end"):
            assert comment in text, (comment, text)
    assert yaml1 == COMMENTED  # already canonical: YAML -> ng -> YAML gives it back


def test_a_comment_stays_with_its_entry() -> None:
    ng = convert(COMMENTED, "t.yaml", "ng")
    lines = ng.splitlines()
    assert any(line.strip().startswith("expand=2,") and line.endswith("# narrow")
               for line in lines)
    assert lines[lines.index("# the MLP") + 1].startswith("module mlp = mlp(")


def test_formatting_is_idempotent_and_canonical() -> None:
    messy = MINIMAL_SPEC.replace("lr: 1e-3", "lr: 1.0e-3")
    once = convert(messy, "t.yaml")
    assert convert(once, "t.yaml") == once
    assert "lr: 0.001" in once


def test_strings_that_would_read_as_something_else_stay_quoted() -> None:
    text = MINIMAL_SPEC + "about: '1e-3'\n"
    yaml_text = convert(text, "t.yaml")
    assert "about: '1e-3'" in yaml_text or 'about: "1e-3"' in yaml_text
    assert 'about "1e-3"' in convert(text, "t.yaml", "ng")


def test_converting_what_the_dsl_cannot_say_is_a_positioned_error() -> None:
    with pytest.raises(SpecError) as caught:
        convert(MINIMAL_SPEC + "extra: 1\n", "t.yaml", "ng")
    text = format_diagnostics(caught.value.diagnostics, caught.value.source)
    assert "error[E-FMT]: the .ng language has no statement for 'extra'" in text


# ----------------------------------------------------------------------------- command line


def test_fmt_rewrites_in_place_and_check_reports(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(MINIMAL_SPEC.replace("lr: 1e-3", "lr: 1.0e-3"))
    result = invoke("fmt", path, "--check")
    assert result.exit_code == 1 and "would reformat" in result.output
    assert "+    rule: {type: adamw, lr: 0.001}" in result.output  # the diff
    assert invoke("fmt", path).exit_code == 0
    assert invoke("fmt", path, "--check").exit_code == 0


def test_fmt_converts_beside_the_file_and_refuses_to_replace(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(MINIMAL_SPEC)
    assert invoke("fmt", path, "--to", "ng").exit_code == 0
    twin = tmp_path / "t.ng"
    assert "level outer every 1 step on corpus" in twin.read_text()
    twin.write_text(twin.read_text() + "# my own note\n")
    refused = invoke("fmt", path, "--to", "ng")
    assert refused.exit_code == 2 and "exists and differs" in refused.output
    assert "# my own note" in twin.read_text()
    assert invoke("fmt", path, "--to", "ng", "--force").exit_code == 0


def test_fmt_to_stdout(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(MINIMAL_SPEC)
    result = invoke("fmt", path, "--to", "ng", "-o", "-")
    assert result.exit_code == 0 and result.output.startswith("nestgraph 1\nspec t\n")


def test_fmt_of_a_broken_file_writes_nothing(tmp_path: Path) -> None:
    good, bad = tmp_path / "a.ng", tmp_path / "b.ng"
    good.write_text("nestgraph   1\n")
    bad.write_text("nestgraph: 1\n")
    result = invoke("fmt", good, bad)
    assert result.exit_code == 3 and "b.ng:1:10" in result.output
    assert good.read_text() == "nestgraph   1\n"


def test_a_comment_on_a_calls_type_keeps_the_call_on_one_line() -> None:
    text = ("nestgraph: 1\nname: x\nmodules:\n  attn:\n    type: attention  # t\n"
            "    heads: 4\n")
    ng1, yaml1, ng2, yaml2 = _texts(text)
    assert "module attn = attention(heads=4)  # t" in ng1
    assert ng2 == ng1 and yaml2 == yaml1


def test_line_breaks_yaml_knows_cannot_escape_a_comment() -> None:
    ng = "nestgraph 1\nspec x  # a\u0085b: 1\u2028c\nmodel: dim 64\n"
    yaml_text = convert(ng, "t.ng", "yaml")
    data, _ = load_yaml(yaml_text, "t.yaml")
    assert data == {"nestgraph": 1, "name": "x", "model": {"dim": 64}}
    assert "# a\\u0085b: 1\\u2028c" in yaml_text


def test_a_merge_key_spelled_as_data_is_quoted() -> None:
    yaml_text = convert('nestgraph 1\nmodule m = {"<<": 1}\n', "t.ng", "yaml")
    data, _ = load_yaml(yaml_text, "t.yaml")
    assert data["modules"]["m"] == {"<<": 1}
