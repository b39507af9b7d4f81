"""The YAML front end: safe parsing, source spans, YAML 1.2 scalars, and error formatting."""

from __future__ import annotations

import math
import time

import pytest

from nestgraph.errors import Diagnostic, SpecError
from nestgraph.spec.source import (
    SourceFile,
    Span,
    diagnostics_as_json,
    format_diagnostic,
    format_diagnostics,
)
from nestgraph.spec.yaml_compose import MAX_ALIASES
from nestgraph.spec.yaml_front import load_value, load_yaml
from nestgraph.testing import MINIMAL_SPEC

MINIMAL = MINIMAL_SPEC


def errors_of(text: str) -> tuple[list[Diagnostic], SourceFile]:
    with pytest.raises(SpecError) as caught:
        load_yaml(text, "x.yaml")
    return caught.value.diagnostics, caught.value.source


def only_error(text: str) -> str:
    diagnostics, source = errors_of(text)
    assert len(diagnostics) == 1, diagnostics
    return format_diagnostic(diagnostics[0], source)


# ------------------------------------------------------------------------------ data, spans


def test_minimal_spec_data() -> None:
    data, _ = load_yaml(MINIMAL, "t.yaml")
    assert data["model"] == {"block": ["attn", "mlp"]}
    assert data["levels"][0]["rule"] == {"type": "adamw", "lr": 0.001}
    assert data["levels"][0]["every"] == "1 step"


def test_spans_of_keys_and_values() -> None:
    _, source = load_yaml(MINIMAL, "t.yaml")
    assert source.filename == "t.yaml"
    assert source.values[()] == Span(1, 1, 2)
    assert source.keys[("name",)] == Span(2, 1, 5)
    assert source.values[("name",)] == Span(2, 7, 8)
    assert source.values[("model", "block")] == Span(4, 10, 21)
    assert source.values[("model", "block", 1)] == Span(4, 17, 20)
    # A list item's span starts at its first key; a block runs on, so it ends with the line.
    assert source.values[("levels", 0)] == Span(9, 5, 16)
    assert source.keys[("levels", 0, "rule", "lr")] == Span(14, 25, 27)
    assert source.values[("levels", 0, "rule", "lr")] == Span(14, 29, 33)
    assert source.values[("modules", "attn")] == Span(6, 9, 26)


def test_locate_falls_back_to_the_nearest_ancestor() -> None:
    _, source = load_yaml(MINIMAL, "t.yaml")
    assert source.locate(("levels", 0, "rule", "lr"), "key") == Span(14, 25, 27)
    # A key that is not there points at the mapping that should hold it, by its key.
    assert source.locate(("levels", 0, "rule", "eps")) == Span(14, 5, 9)
    assert source.locate(("levels", 0, "meta")) == Span(9, 5, 16)
    assert source.locate(("train", "steps")) == Span(1, 1, 2)
    # A list item has no key: asked for its key, it gives its value.
    assert source.locate(("levels", 0), "key") == Span(9, 5, 16)


def test_empty_value_points_at_its_key() -> None:
    _, source = load_yaml("a: 1\nabout:\nb: 2\n", "x.yaml")
    assert source.values[("about",)] == Span(2, 1, 6)


# ----------------------------------------------------------------------------------- scalars


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-3", 0.001),
        ("3e4", 30000.0),
        ("1.0e-2", 0.01),
        ("-2.5", -2.5),
        (".5", 0.5),
        ("12", 12),
        ("-3", -3),
        ("012", 12),  # YAML 1.1 would read octal 10
        ("0o17", 15),
        ("0x1F", 31),
        ("4_000_000", 4_000_000),
        ("true", True),
        ("False", False),
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("null", None),
        ("~", None),
        ("1:30", "1:30"),  # YAML 1.1 would read 90
        ("2024-01-01", "2024-01-01"),  # YAML 1.1 would read a date
        ("'1e-3'", "1e-3"),
        ('"true"', "true"),
        ("!!str 1e-3", "1e-3"),
        ("!!float 3", 3.0),
        ("!!int '12'", 12),
        ("! 12", "12"),
        ("16 tokens", "16 tokens"),
    ],
)
def test_scalars_follow_yaml_1_2(text: str, value: object) -> None:
    data, _ = load_yaml(f"v: {text}\n", "x.yaml")
    assert data["v"] == value
    assert type(data["v"]) is type(value)


def test_infinity_and_nan() -> None:
    data, _ = load_yaml("a: .inf\nb: -.Inf\nc: .nan\n", "x.yaml")
    assert data["a"] == math.inf and data["b"] == -math.inf and math.isnan(data["c"])


def test_load_value_reads_flow_values() -> None:
    assert load_value("[attn, mlp]") == ["attn", "mlp"]
    assert load_value("{type: gd, lr: 1e-2}") == {"type": "gd", "lr": 0.01}
    assert load_value("32 tokens") == "32 tokens"


# ------------------------------------------------------------------------------- rejections


def test_duplicate_key_points_at_the_second_and_names_the_first() -> None:
    text = "a: 1\nb:\n  c: 2\n  c: 3\n"
    assert only_error(text) == (
        "x.yaml:4:3: error[E-YAML]: duplicate key 'c'\n"
        "  |\n"
        "4 |   c: 3\n"
        "  |   ^\n"
        "  = help: remove one of them: YAML would silently keep only the last\n"
        "  = note: 'c' is first set at x.yaml:3:3"
    )


def test_python_tag_is_rejected_and_never_run() -> None:
    text = 'nestgraph: 1\nx: !!python/object/apply:os.system ["echo hi"]\n'
    diagnostics, source = errors_of(text)
    assert len(diagnostics) == 1
    d = diagnostics[0]
    assert d.message == "tag '!!python/object/apply:os.system' is not allowed in a spec"
    assert "could run code" in d.notes[0]
    assert source.locate(d.path) == Span(2, 4, 47)


@pytest.mark.parametrize("text", ["a: !!binary aGk=\n", "a: !local 3\n", "a: !!set {x: null}\n"])
def test_other_tags_are_rejected(text: str) -> None:
    assert "is not allowed in a spec" in only_error(text)


def test_tagged_value_that_does_not_fit_its_tag() -> None:
    assert "x.yaml:1:4: error[E-YAML]: 'x' cannot be read as !!int" in only_error("a: !!int x\n")


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_fails_fast() -> None:
    start = time.perf_counter()
    text = only_error(billion_laughs())
    assert time.perf_counter() - start < 0.5
    assert "aliases expand the document by more than 100,000 values" in text
    assert "billion laughs" in text
    # Reported where the expansion first gets too large: 9**6 values under 'f'.
    assert text.startswith("x.yaml:6:4:")


def test_alias_count_is_limited() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    assert f"more than {MAX_ALIASES} aliases" in only_error(text)
    within, _ = load_yaml("a: &a 1\nb: [" + ", ".join(["*a"] * MAX_ALIASES) + "]\n", "x.yaml")
    assert within["b"] == [1] * MAX_ALIASES


def test_recursive_alias_is_rejected() -> None:
    assert "contains it" in only_error("a: &a [1, *a]\n")


def test_merge_keys_are_supported_and_written_keys_win() -> None:
    text = "base: &r {type: gd, lr: 0.1}\nrule:\n  <<: *r\n  lr: 0.2\n"
    data, source = load_yaml(text, "x.yaml")
    assert data["rule"] == {"type": "gd", "lr": 0.2}
    assert source.values[("rule", "lr")] == Span(4, 7, 10)


def test_syntax_error_uses_the_problem_mark() -> None:
    text = only_error("a: [1, 2\nb: 3\n")
    assert text.startswith("x.yaml:2:2: error[E-YAML]: invalid YAML: expected ',' or ']'")
    assert "while parsing a flow sequence that starts at line 1, column 4" in text


def test_tab_indentation_gets_a_hint() -> None:
    text = only_error("a:\n\tb: 1\n")
    assert text.startswith("x.yaml:2:1: error[E-YAML]: invalid YAML")
    assert "= help: YAML does not allow tabs for indentation: use spaces" in text


def test_keys_must_be_strings() -> None:
    diagnostics, source = errors_of("1: a\n? [x]\n: b\nnull: c\ntrue: d\n'2': ok\n")
    messages = [d.message for d in diagnostics]
    assert messages == [
        "key 1 is read as a number; keys must be strings",
        "a key must be a string, not a list",
        "a key must be a string, not null",
        "key true is read as a boolean; keys must be strings",
    ]
    assert diagnostics[0].hint == "write it in quotes: '1'"
    assert [source.locate(d.path).line for d in diagnostics] == [1, 2, 4, 5]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_document(text: str) -> None:
    assert only_error(text).startswith("x.yaml:1:1: error[E-YAML]: the spec is empty")


def test_top_level_must_be_a_mapping() -> None:
    message = "the top level of a spec must be a mapping of keys, not a list"
    assert message in only_error("- a\n- b\n")


def test_two_documents_are_rejected() -> None:
    text = only_error("a: 1\n---\nb: 2\n")
    assert "expected a single document in the stream, but found another document" in text


def test_several_errors_are_collected() -> None:
    text = "a: 1\na: 2\nb: !!python/name:os.system\nc:\n  d: 1\n  d: 2\n"
    diagnostics, source = errors_of(text)
    assert len(diagnostics) == 3
    report = format_diagnostics(diagnostics, source)
    lines = [line for line in report.splitlines() if "error[" in line]
    places = [line.split(": error")[0] for line in lines]
    assert places == ["x.yaml:2:1", "x.yaml:3:4", "x.yaml:6:3"]
    assert report.endswith("\n\n3 errors")


# ------------------------------------------------------------------------------- formatting


def test_format_matches_the_compiler_style() -> None:
    text = "levels:\n" + "\n" * 11 + "  - name: cms_fast\n    update_perod: 4\n"
    _, source = load_yaml(text, "specs/x.yaml")
    d = Diagnostic(
        "unknown key 'update_perod' in level 'cms_fast'",
        ("levels", 0, "update_perod"),
        hint="did you mean 'every'?",
        code="E-SCHEMA",
        part="key",
        notes=("allowed keys: name, owns, every",),
    )
    assert format_diagnostic(d, source) == (
        "specs/x.yaml:14:5: error[E-SCHEMA]: unknown key 'update_perod' in level 'cms_fast'\n"
        "   |\n"
        "14 |     update_perod: 4\n"
        "   |     ^^^^^^^^^^^^\n"
        "   = help: did you mean 'every'?\n"
        "   = note: allowed keys: name, owns, every"
    )


def test_format_without_code_or_source() -> None:
    d = Diagnostic("something is wrong", ("a",), hint="fix it")
    assert format_diagnostic(d, None) == "error: something is wrong\n  = help: fix it"


def test_override_values_are_shown_as_the_override() -> None:
    _, source = load_yaml("train:\n  steps: 3\n", "x.yaml")
    source.overrides[("train", "steps")] = (2, "train.steps=abc")
    d = Diagnostic("'steps' in train: bad", ("train", "steps"), code="E-SCHEMA")
    assert format_diagnostic(d, source) == (
        "override #2 'train.steps=abc': error[E-SCHEMA]: 'steps' in train: bad"
    )


def test_diagnostics_are_sorted_deduplicated_and_counted() -> None:
    _, source = load_yaml("a: 1\nb: 2\nc: 3\n", "x.yaml")
    source.overrides[("d",)] = (1, "d=4")
    diags = [
        Diagnostic("late", ("c",)),
        Diagnostic("from the command line", ("d",)),
        Diagnostic("early", ("a",)),
        Diagnostic("late", ("c",)),
    ]
    report = format_diagnostics(diags, source)
    heads = [line for line in report.splitlines() if "error" in line]
    assert heads == [
        "x.yaml:1:4: error: early",
        "x.yaml:3:4: error: late",
        "override #1 'd=4': error: from the command line",
        "3 errors",
    ]
    assert format_diagnostics([Diagnostic("one")], None) == "error: one\n\n1 error"


def test_long_lines_are_shown_around_the_span() -> None:
    text = "a: {" + ", ".join(f"k{i}: {i}" for i in range(60)) + ", bad: 1}\n"
    _, source = load_yaml(text, "x.yaml")
    out = format_diagnostic(Diagnostic("here", ("a", "bad"), part="key"), source)
    shown, carets = out.splitlines()[2], out.splitlines()[3]
    assert shown.startswith("1 | ...") and len(shown) < 140
    assert shown[carets.index("^") : carets.index("^") + 3] == "bad"


def test_diagnostics_as_json() -> None:
    _, source = load_yaml("a: 1\nb: 2\n", "x.yaml")
    source.overrides[("c",)] = (1, "c=3")
    diags = [Diagnostic("bad c", ("c",), code="E-X"), Diagnostic("bad b", ("b",), hint="h")]
    assert diagnostics_as_json(diags, source) == [
        {
            "file": "x.yaml", "line": 2, "col": 4, "end_col": 5, "severity": "error",
            "code": "", "message": "bad b", "hint": "h", "notes": [], "path": ["b"],
            "override": None,
        },
        {
            "file": None, "line": None, "col": None, "end_col": None, "severity": "error",
            "code": "E-X", "message": "bad c", "hint": "", "notes": [], "path": ["c"],
            "override": {"number": 1, "text": "c=3"},
        },
    ]


def test_positions_without_a_document_path_have_no_json_path() -> None:
    diagnostics, source = errors_of("a: [1\n")
    (entry,) = diagnostics_as_json(diagnostics, source)
    assert entry["path"] is None and entry["line"] == 2


def test_a_control_character_is_a_positioned_error() -> None:
    with pytest.raises(SpecError) as caught:
        load_yaml("nestgraph: 1\nname: x  # a\x0cb\n", "t.yaml")
    text = format_diagnostics(caught.value.diagnostics, caught.value.source)
    assert text.startswith("t.yaml:2:13: error[E-YAML]: invalid YAML: the character U+000C")
