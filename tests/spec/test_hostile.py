"""Hostile spec input: every limit ends in a positioned SpecError, never in an internal error.

Deep nesting, huge numbers, lone surrogates, oversized files, alias counting, and the escaping
of terminal control characters in what the diagnostics printer echoes.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import nestgraph.cli
import nestgraph.spec as front
from nestgraph import load_spec
from nestgraph.errors import SpecError
from nestgraph.spec import read_document
from nestgraph.spec.source import format_diagnostics
from nestgraph.spec.yaml_compose import MAX_EXPANSION
from nestgraph.spec.yaml_front import load_yaml
from nestgraph.spec.yaml_scalars import MAX_NUMBER_LENGTH
from nestgraph.testing import MINIMAL_SPEC

NG_SPEC = """\
nestgraph 1
spec t
model:
    block [attn, mlp]
module attn = attention()
module mlp = mlp()
level outer every 1 step on corpus:
    owns rest
    minimise next_token by adamw(lr=0.001)
    lifetime run
"""


def _error(tmp_path: Path, name: str, text: str) -> tuple[SpecError, str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(str(path))
    return caught.value, format_diagnostics(caught.value.diagnostics, caught.value.source)


def _cli(path: Path, *args: str):
    return CliRunner().invoke(nestgraph.cli.app, ["validate", str(path), *args])


def test_the_ng_twin_of_the_minimal_spec_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "t.ng"
    path.write_text(NG_SPEC, encoding="utf-8")
    assert load_spec(str(path)).spec.name == "t"


# ------------------------------------------------------------------ nesting (item 6)


@pytest.mark.parametrize("depth", [101, 10_000])
def test_ng_nesting_past_the_limit_is_a_positioned_error(tmp_path: Path, depth: int) -> None:
    deep = "[" * depth + "]" * depth
    text = NG_SPEC.replace("block [attn, mlp]", f"block [attn, mlp]\n    extra {deep}")
    err, shown = _error(tmp_path, "deep.ng", text)
    assert len(err.diagnostics) == 1
    # The 101st bracket, on line 5 after "    extra ".
    assert shown.startswith(f"{tmp_path / 'deep.ng'}:5:{11 + 100}: error[E-DSL]: values are "
                            "nested more than 100 deep")
    assert "help:" in shown


def test_ng_nesting_at_the_limit_is_parsed(tmp_path: Path) -> None:
    deep = "[" * 99 + "]" * 99
    text = NG_SPEC.replace("block [attn, mlp]", f"block [attn, mlp]\n    extra {deep}")
    err, shown = _error(tmp_path, "deep.ng", text)
    assert "nested" not in shown
    assert "extra" in shown  # the schema's complaint about the unknown key, not the depth


def test_brackets_in_ng_strings_and_comments_do_not_count(tmp_path: Path) -> None:
    text = NG_SPEC.replace("spec t", f'spec t\nabout "{"[" * 500}"  # {"(" * 500}')
    path = tmp_path / "t.ng"
    path.write_text(text, encoding="utf-8")
    assert load_spec(str(path)).spec.about == "[" * 500


def test_ng_nesting_through_the_cli_exits_3(tmp_path: Path) -> None:
    path = tmp_path / "deep.ng"
    path.write_text(NG_SPEC.replace("block [attn, mlp]", "block " + "[" * 10_000),
                    encoding="utf-8")
    result = _cli(path)
    assert result.exit_code == 3, result.output
    assert "nested more than 100 deep" in result.output
    assert "internal error" not in result.output


# ------------------------------------------------------------------ huge integers (item 6)


@pytest.mark.parametrize("digits", [5000, MAX_NUMBER_LENGTH + 1])
def test_a_huge_integer_in_yaml_is_a_positioned_error(tmp_path: Path, digits: int) -> None:
    text = MINIMAL_SPEC.replace("block: [attn, mlp]", f"block: [attn, mlp]\n  dim: {'9' * digits}")
    err, shown = _error(tmp_path, "big.yaml", text)
    assert len(err.diagnostics) == 1
    assert shown.startswith(f"{tmp_path / 'big.yaml'}:5:8: error[E-YAML]: this number is "
                            f"{digits:,} characters long")
    assert f"at most {MAX_NUMBER_LENGTH}" in shown
    assert "help: write a shorter number" in shown


def test_a_huge_integer_in_ng_is_a_positioned_error(tmp_path: Path) -> None:
    text = NG_SPEC.replace("block [attn, mlp]", f"block [attn, mlp]\n    dim {'9' * 5000}")
    err, shown = _error(tmp_path, "big.ng", text)
    assert len(err.diagnostics) == 1
    assert shown.startswith(f"{tmp_path / 'big.ng'}:5:9: error[E-DSL]: this number is 5,000 "
                            "characters long")


def test_a_huge_integer_in_an_override_is_an_override_error(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(MINIMAL_SPEC, encoding="utf-8")
    result = _cli(path, f"model.dim={'9' * 5000}")
    assert result.exit_code == 3, result.output
    assert "override #1" in result.output and "5,000 characters long" in result.output


def test_a_huge_list_index_in_an_override_is_an_override_error(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(MINIMAL_SPEC, encoding="utf-8")
    result = _cli(path, f"levels.{'9' * 5000}.every=2 steps")
    assert result.exit_code == 3, result.output
    assert "override #1" in result.output and "there is no entry" in result.output


def test_a_long_quoted_number_is_text(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(MINIMAL_SPEC.replace("name: t", f"name: t\nabout: '{'9' * 5000}'"),
                    encoding="utf-8")
    loaded = load_spec(str(path))
    assert loaded.spec.about == "9" * 5000
    assert f"about: '{'9' * 5000}'" in front.dump_resolved(loaded.spec)


# ------------------------------------------------------------------ lone surrogates (item 6)


def test_a_lone_surrogate_in_a_yaml_name_is_a_positioned_error(tmp_path: Path) -> None:
    text = MINIMAL_SPEC.replace("name: outer", 'name: "a\\ud800b"')
    err, shown = _error(tmp_path, "s.yaml", text)
    assert len(err.diagnostics) == 1
    assert shown.startswith(f"{tmp_path / 's.yaml'}:9:11: error[E-YAML]: this string holds "
                            "U+D800, half of a surrogate pair")
    assert "help:" in shown


def test_a_lone_surrogate_in_an_ng_name_is_a_positioned_error(tmp_path: Path) -> None:
    text = NG_SPEC.replace("spec t", 'spec t\nabout "a\\udc00b"')
    err, shown = _error(tmp_path, "s.ng", text)
    assert shown.startswith(f"{tmp_path / 's.ng'}:3:7: error[E-DSL]: this string holds U+DC00")


def test_a_surrogate_pair_in_ng_is_one_character(tmp_path: Path) -> None:
    path = tmp_path / "t.ng"
    path.write_text(NG_SPEC.replace("spec t", 'spec t\nabout "\\ud83d\\ude00"'), encoding="utf-8")
    assert load_spec(str(path)).spec.about == "\U0001f600"


def test_a_lone_surrogate_through_the_cli_exits_3(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(MINIMAL_SPEC.replace("name: outer", 'name: "a\\ud800b"'), encoding="utf-8")
    result = _cli(path)
    assert result.exit_code == 3, result.output
    assert "U+D800" in result.output


# ------------------------------------------------------------------ file size (item 9)


@pytest.mark.parametrize("suffix", [".yaml", ".ng"])
def test_a_spec_file_over_the_limit_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    monkeypatch.setattr(front, "MAX_SPEC_BYTES", 1000)
    path = tmp_path / f"big{suffix}"
    path.write_text("# padding\n" + "#" * 2000 + "\n", encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        read_document(str(path))
    assert time.perf_counter() - start < 1.0
    shown = format_diagnostics(caught.value.diagnostics, caught.value.source)
    assert shown.startswith(f"{path}:1:1: error[E-FILE]: the spec file is larger than")
    assert "(1,000 bytes)" in shown


def test_the_default_size_limit_is_256_kib_and_refuses_a_big_file_fast(tmp_path: Path) -> None:
    assert front.MAX_SPEC_BYTES == 256 * 1024
    path = tmp_path / "big.ng"
    path.write_text(NG_SPEC + "# x\n" * (front.MAX_SPEC_BYTES // 4 + 1), encoding="utf-8")
    start = time.perf_counter()
    result = _cli(path)
    assert time.perf_counter() - start < 2.0
    assert result.exit_code == 3, result.output
    assert "larger than 256 KiB (262,144 bytes)" in result.output


def test_a_spec_at_the_limit_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(front, "MAX_SPEC_BYTES", len(MINIMAL_SPEC.encode()))
    path = tmp_path / "t.yaml"
    path.write_text(MINIMAL_SPEC, encoding="utf-8")
    assert load_spec(str(path)).spec.name == "t"


# ------------------------------------------------------------------ aliases (item 14)


def test_a_big_spec_without_aliases_is_not_a_billion_laughs() -> None:
    # 150,000 values, no alias: the old check counted nodes and refused this. (Read as text:
    # a file this size is over the file size limit.)
    many = ", ".join(["1"] * 150_000)
    data, _ = load_yaml(MINIMAL_SPEC.replace("name: t", f"name: t\nextra: [{many}]"), "big.yaml")
    assert len(data["extra"]) == 150_000


def test_few_aliases_expanding_a_lot_are_refused() -> None:
    # Two aliases of a list of MAX_EXPANSION values: the document would grow by 2x that.
    many = ", ".join(["1"] * MAX_EXPANSION)
    text = MINIMAL_SPEC.replace("name: t", f"name: t\na: &a [{many}]\nb: [*a, *a]")
    with pytest.raises(SpecError) as caught:
        load_yaml(text, "big.yaml")
    (d,) = caught.value.diagnostics
    assert "aliases expand the document by more than 100,000 values" in d.message
    shown = format_diagnostics([d], caught.value.source)
    assert shown.startswith("big.yaml:")


def test_aliases_that_add_little_are_accepted(tmp_path: Path) -> None:
    text = MINIMAL_SPEC.replace("rule: {type: adamw, lr: 1e-3}", "rule: &r {type: adamw, lr: 1e-3}")
    path = tmp_path / "t.yaml"
    path.write_text(text + "train: {steps: 10}\n", encoding="utf-8")
    assert load_spec(str(path)).spec.train.steps == 10


# ------------------------------------------------------------------ escaping (item 10)

ESC_NAME = "ou\x1b[31mter"
RLO_NAME = "ou\u202eter"


def _hostile_yaml(name: str, value: str) -> str:
    # The level's name carries the character; so does a value (an unknown rule type).
    json_name = json.dumps(name)
    json_value = json.dumps(value)
    return (MINIMAL_SPEC.replace("name: outer", f"name: {json_name}")
            .replace("type: adamw", f"type: {json_value}"))


@pytest.mark.parametrize("char", ["\x1b", "\u202e"], ids=["esc", "rlo"])
def test_diagnostics_escape_control_and_bidi_characters(tmp_path: Path, char: str) -> None:
    name, value = f"ou{char}ter", f"adam{char}w"
    path = tmp_path / "t.yaml"
    path.write_text(_hostile_yaml(name, value), encoding="utf-8")
    result = _cli(path)
    assert result.exit_code == 3, result.output
    assert char not in result.output
    escaped = "\\x1b" if char == "\x1b" else "\\u202e"
    # In the messages (a name and a value) and in the hint ("did you mean").
    assert f"'ou{escaped}ter' is not a valid name" in result.output
    assert f"unknown rule type 'adam{escaped}w' in level 'ou{escaped}ter'" in result.output
    assert "did you mean 'adamw'?" in result.output


def test_a_raw_bidi_override_in_the_quoted_yaml_line_is_escaped(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(MINIMAL_SPEC.replace("type: adamw", "type: adam\u202ew"), encoding="utf-8")
    result = _cli(path)
    assert result.exit_code == 3, result.output
    assert "\u202e" not in result.output
    assert "rule: {type: adam\\u202ew, lr: 1e-3}" in result.output  # the source line as shown


def test_a_raw_escape_in_the_quoted_ng_line_is_escaped(tmp_path: Path) -> None:
    path = tmp_path / "t.ng"
    path.write_text(NG_SPEC.replace("adamw(", 'adamw(bad="\x1b[2J", '), encoding="utf-8")
    result = _cli(path)
    assert result.exit_code == 3, result.output
    assert "\x1b" not in result.output
    assert 'adamw(bad="\\x1b[2J", lr=0.001)' in result.output
    lines = result.output.splitlines()
    shown = next(i for i, line in enumerate(lines) if 'bad="\\x1b[2J"' in line)
    text, carets = lines[shown], lines[shown + 1]
    start = carets.index("^")
    # The carets stand under the whole entry, escape included.
    assert text[start:len(carets)].startswith("bad")
    assert len(carets.strip(" |")) >= 3


def test_carets_line_up_under_an_escaped_line(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(MINIMAL_SPEC.replace("type: adamw", "type: ad\u202eamw"), encoding="utf-8")
    result = _cli(path)
    lines = result.output.splitlines()
    shown = next(i for i, line in enumerate(lines) if "type: ad\\u202eamw" in line)
    text, carets = lines[shown], lines[shown + 1]
    start = carets.index("^")
    assert text[start:len(carets)] == "ad\\u202eamw"


def test_an_escaped_name_in_the_file_name_and_an_override(tmp_path: Path) -> None:
    path = tmp_path / "t\x1b.yaml"
    path.write_text(MINIMAL_SPEC, encoding="utf-8")
    result = _cli(path, "levels.ou\u202eter.every=2 steps")
    assert result.exit_code == 3, result.output
    assert "\x1b" not in result.output and "\u202e" not in result.output
    assert "ou\\u202eter" in result.output


def test_json_output_keeps_the_exact_strings(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(_hostile_yaml(ESC_NAME, "adam\u202ew"), encoding="utf-8")
    result = _cli(path, "--format", "json")
    assert result.exit_code == 3, result.output
    assert "\x1b" not in result.output and "\u202e" not in result.output  # JSON escapes them
    entries = json.loads(result.output)
    assert any(e["message"] == "unknown rule type 'adam\u202ew' in level 'ou\x1b[31mter'"
               for e in entries), entries


def test_the_printer_escapes_notes_too() -> None:
    from nestgraph.errors import Diagnostic

    text = format_diagnostics([Diagnostic("m\x1b", notes=("n\u202e",), hint="h\x07")], None)
    assert re.fullmatch(r"error: m\\x1b\n  = help: h\\x07\n  = note: n\\u202e\n\n1 error", text)
