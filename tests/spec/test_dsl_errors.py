"""Syntax errors in .ng files: positioned, in the user's words, several per run.

Each file in dsl_errors/ makes one common mistake (16 makes three). Its whole report is a
golden file (``pytest --overwrite`` rewrites them); `INTENDED` says what each must lead with.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nestgraph.compiler import check_document
from nestgraph.errors import SpecError
from nestgraph.spec.dsl_errors import MISTAKES, _classify, shown
from nestgraph.spec.dsl_front import load_dsl
from nestgraph.spec.dsl_parser import parser
from nestgraph.spec.source import format_diagnostics

HERE = Path(__file__).resolve().parent / "dsl_errors"
FILES = sorted(HERE.glob("*.ng"))

# file -> (line, column, message) of its first error
INTENDED = {
    "01_period_without_unit": (9, 25, "a period needs a unit after its count"),
    "02_equals_in_record": (7, 41, "entries of a { } record are written key: value"),
    "03_colon_in_call": (16, 36, "arguments of a call are written name=value"),
    "04_unclosed_bracket": (4, 32, "'[' is never closed"),
    "05_unknown_rule": (16, 28, "unknown rule type 'adamm' in level 'outer'"),
    "06_header_without_colon": (15, 5, "a level's header ends with ':' before its clauses"),
    "07_objective_without_by": (16, 25, "after the objective comes 'by' and the rule"),
    "08_yaml_saved_as_ng": (2, 10, "this is YAML syntax, not the .ng language"),
    "09_unclosed_string": (4, 7, "this string is not closed"),
    "10_misspelled_statement": (14, 1, "'levle' does not start a statement"),
    "11_ends_too_soon": (13, 68, "the file ends here: expected a value (a number, a name, a "
                                 "quoted string, [a list], {a record} or a call(...)) after this"),
    "12_argument_without_name": (16, 34, "arguments of a call need names"),
    "13_module_without_equals": (7, 12, "a module is written 'module name = type(settings)'"),
    "14_key_without_value": (19, 13, "this key has no value"),
    "15_wrong_closer": (4, 42, "')' does not close '['"),
    "16_several_mistakes": (9, 25, "a period needs a unit after its count"),
    "17_unknown_owned_part": (10, 5, "level 'attention' owns 'attn.cahce', which is not a "
                                     "state of the model"),
}


def report(path: Path) -> tuple[SpecError, str]:
    with pytest.raises(SpecError) as caught:
        data, source = load_dsl(path.read_text(encoding="utf-8"), path.name)
        check_document(data, source)
    err = caught.value
    return err, format_diagnostics(err.diagnostics, err.source)


def test_every_broken_file_has_an_intent() -> None:
    assert {p.stem for p in FILES} == set(INTENDED)
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_broken_file_gives_its_positioned_message(path: Path, overwrite: bool) -> None:
    err, text = report(path)
    line, col, message = INTENDED[path.stem]
    assert text.startswith(f"{path.name}:{line}:{col}: error[")
    assert text.splitlines()[0].endswith(f"]: {message}")
    golden = path.with_suffix(".txt")
    if overwrite:
        golden.write_text(text + "\n", encoding="utf-8")
    assert text + "\n" == golden.read_text(encoding="utf-8"), "review, then --overwrite"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_no_internal_terminal_name_is_shown(path: Path) -> None:
    _, text = report(path)
    internal = {t.name for t in parser().terminals} | {"$END"}
    text = re.sub(r"error\[E-[A-Z]+\]", "error", text)  # stable codes such as E-NAME are ours
    words = set(re.findall(r"[$A-Za-z_][A-Za-z0-9_]*", text))
    assert not {w for w in words if w in internal or w.startswith("__")}


def test_several_errors_are_reported_in_one_run() -> None:
    err, _ = report(HERE / "16_several_mistakes.ng")
    assert len(err.diagnostics) == 3


def test_every_terminal_is_shown_as_typed_or_described() -> None:
    for terminal in parser().terminals:
        if terminal.name not in ("WS", "COMMENT"):
            text = shown(terminal.name)
            assert text and terminal.name not in text


@pytest.mark.parametrize("label", sorted(MISTAKES))
def test_each_mistake_is_recognised_from_its_own_examples(label: str) -> None:
    from lark.exceptions import UnexpectedToken

    for example in MISTAKES[label].examples:
        with pytest.raises(UnexpectedToken) as caught:
            parser().parse(example)
        assert _classify(caught.value) == label, example


def test_a_mistake_deep_inside_a_value_is_still_recognised() -> None:
    text = "module m = m(a={b: [c(d={e: f(g: 1)})]})\n"
    with pytest.raises(SpecError) as caught:
        load_dsl(text, "t.ng")
    (d,) = caught.value.diagnostics
    assert d.message == MISTAKES["arg_colon"].message


def test_end_of_file_points_at_the_last_token() -> None:
    with pytest.raises(SpecError) as caught:
        load_dsl("nestgraph 1\nspec t\n\nlevel a every 1 step on corpus:\n\n# trailing\n", "t.ng")
    text = format_diagnostics(caught.value.diagnostics, caught.value.source)
    assert text.startswith("t.ng:4:31: error[E-DSL]: the file ends here")


def test_a_bad_escape_in_a_string_is_positioned() -> None:
    with pytest.raises(SpecError) as caught:
        load_dsl('nestgraph 1\nabout "a \\q b"\n', "t.ng")
    text = format_diagnostics(caught.value.diagnostics, caught.value.source)
    assert text.startswith("t.ng:2:7: error[E-DSL]: this string has an escape that is not")


def test_an_empty_file_is_an_error() -> None:
    with pytest.raises(SpecError) as caught:
        load_dsl("# only a comment\n", "t.ng")
    assert caught.value.diagnostics[0].message == "the spec is empty"
