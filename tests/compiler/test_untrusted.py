"""Specs are untrusted input: no string of a spec may become code in program.py.

Names become identifiers in the program, so the schema must reject anything but plain names,
with a positioned diagnostic. Free text (``about``, ``data.source``) reaches the program as
string literals only: the program must compile, make exactly the calls the program of a plain
spec makes, and hold every dangerous substring inside a string constant. The YAML front end
must refuse Python tags and alias bombs without running or expanding them.
"""

from __future__ import annotations

import ast
import collections
import functools
import json
import os
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import nestgraph.cli
from nestgraph.compiler import check_document, compile_spec
from nestgraph.errors import SpecError
from nestgraph.spec import read_document
from nestgraph.spec.source import format_diagnostics
from nestgraph.spec.yaml_front import load_yaml

# A small model keeps the shapes pass (the one that needs torch) quick.
TINY = """\
nestgraph: 1
name: tiny
about: plain
model:
  dim: 8
  layers: 1
  block: [attn, mlp]
modules:
  attn: {type: attention, heads: 2}
  mlp: {type: mlp, expand: 2}
levels:
  - name: attention
    owns: attn.cache
    every: 1 token
    context: tokens
    objective: nadaraya_watson
    rule: {type: closed_form}
    lifetime: sequence
  - name: outer
    owns: rest
    every: 1 step
    context: corpus
    objective: next_token
    rule: {type: adamw, lr: 1.0e-3}
    lifetime: run
train: {steps: 2, batch: 2, seq_len: 16}
data: {source: stdlib}
"""

INJECT = "__import__('os').system('x')"

NAME_PAYLOADS = [
    'a"b',
    "a'b",
    'a"""b',
    "a\\b",
    "a\nb",
    INJECT,
    f"x\n{INJECT}\n",
    f'"""\n{INJECT}\n"""',
]

# Where a name is written: the line of TINY to change, how, and the path of the diagnostic.
NAME_PLACES = {
    "spec name": ("name: tiny", "name: {}", ("name",)),
    "level name": ("  - name: outer", "  - name: {}", ("levels", 1, "name")),
    "module name": ("  mlp: {type: mlp, expand: 2}", "  {}: {{type: mlp, expand: 2}}",
                    ("modules", "{}")),
    "block entry": ("  block: [attn, mlp]", "  block: [attn, {}]", ("model", "block", 1)),
    "owns entry": ("    owns: attn.cache", "    owns: [{}]", ("levels", 0, "owns", 0)),
    "rate": ("lr: 1.0e-3", "lr: {}", ("levels", 1, "rule", "lr")),
}


def quoted(text: str) -> str:
    """`text` as a YAML double-quoted scalar (JSON's escapes are YAML's)."""
    return json.dumps(text)


def put(line: str, template: str, payload: str) -> str:
    assert TINY.count(line) == 1
    return TINY.replace(line, template.format(quoted(payload)))


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("payload", NAME_PAYLOADS, ids=ascii)
@pytest.mark.parametrize("place", list(NAME_PLACES))
def test_names_carrying_code_are_rejected_with_a_position(place: str, payload: str) -> None:
    line, template, path = NAME_PLACES[place]
    text = put(line, template, payload)
    data, source = load_yaml(text, "t.yaml")
    with pytest.raises(SpecError) as caught:
        compile_spec(data, source)
    err = caught.value
    expected = tuple(payload if part == "{}" else part for part in path)
    found = [d for d in err.diagnostics if d.path[: len(expected)] == expected]
    assert found, [d.path for d in err.diagnostics]
    # Shown at the line where the payload is written, as file:line:col.
    changed = template.format(quoted(payload))
    written = 1 + next(i for i, text_line in enumerate(text.split("\n")) if changed in text_line)
    shown = format_diagnostics(found, err.source)
    assert re.match(rf"t\.yaml:{written}:\d+: error\[E-(SCHEMA|NAME)\]: ", shown), shown
    for block in format_diagnostics(err.diagnostics, err.source).split("\n\n")[:-1]:
        assert re.match(r"t\.yaml:\d+:\d+: error", block), block


@pytest.mark.parametrize("place", ["spec name", "level name", "module name"])
def test_a_name_with_a_trailing_newline_is_rejected(place: str) -> None:
    line, template, _ = NAME_PLACES[place]
    text = put(line, template, "outer\n")
    if place == "module name":
        text = text.replace("block: [attn, mlp]", 'block: [attn, "outer\\n"]')
    data, source = load_yaml(text, "t.yaml")
    with pytest.raises(SpecError):
        check_document(data, source)


# --------------------------------------------------------------------- compiled program


@functools.cache
def _program(text: str) -> str:
    data, source = load_yaml(text, "t.yaml")
    program = compile_spec(data, source).program
    assert program is not None
    return program


def calls(program: str) -> collections.Counter:
    """Every call the program makes, by the dotted name of what it calls."""
    def name(node: ast.AST) -> str:
        if isinstance(node, ast.Attribute):
            return f"{name(node.value)}.{node.attr}"
        return node.id if isinstance(node, ast.Name) else type(node).__name__

    tree = ast.parse(program)
    return collections.Counter(name(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call))


def string_spans(program: str) -> list[tuple[int, int]]:
    """Where each string constant of `program` lies, as offsets into `program`."""
    lines = program.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)

    def offset(lineno: int, col: int) -> int:  # ast columns count UTF-8 bytes
        return starts[lineno - 1] + len(lines[lineno - 1].encode()[:col].decode())

    return [(offset(n.lineno, n.col_offset), offset(n.end_lineno, n.end_col_offset))
            for n in ast.walk(ast.parse(program))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def assert_inert(program: str) -> None:
    program.encode("utf-8")  # it can be written as program.py
    compile(program, "program.py", "exec")
    assert calls(program) == calls(_program(TINY))
    # Python reads \r and \r\n as \n; check the text as Python sees it.
    seen = re.sub(r"\r\n?", "\n", program)
    spans = string_spans(seen)
    for needle in ("__import__", "system(", "eval(", "exec("):
        for m in re.finditer(re.escape(needle), seen):
            assert any(a <= m.start() and m.end() <= b for a, b in spans), \
                f"{needle!r} at offset {m.start()} is outside every string literal"


def test_the_plain_programs_calls() -> None:
    found = calls(_program(TINY))
    assert found["lv.LevelDef"] == 2
    assert not {"__import__", "eval", "exec", "os.system"} & set(found)


TEXT_PAYLOADS = [
    f'"""; {INJECT}; """',
    f'"""\n{INJECT}\n"""',
    f"'''\n{INJECT}\n'''",
    f'\\"""\n{INJECT}\n#',
    f'""""""{INJECT} eval("1") exec("2")',
    f"\r\"\"\"\r{INJECT}\r\n",
    f"naïve — ü \"\"\"{INJECT}",
    "ends in a backslash \\",
    'ends in a quote "',
    "{name} {title} {sha} %s %(x)s",
    "\\N{BULLET} \\x41 \\u0041 \\' \\\" \\\\",
]


@pytest.mark.parametrize("payload", TEXT_PAYLOADS, ids=ascii)
def test_about_and_data_source_are_emitted_inert(payload: str) -> None:
    text = put("about: plain", "about: {}", payload)
    text = text.replace("data: {source: stdlib}", f"data: {{source: {quoted(payload)}}}")
    program = _program(text)
    assert_inert(program)
    tree = ast.parse(program)
    # data.source arrives unchanged, as a literal.
    data = next(n.value for n in tree.body
                if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "DATA")
    assert ast.literal_eval(data)["source"] == payload
    # about is the docstring's title, with only its triple quotes changed.
    title = f"tiny: {payload}".strip().rstrip(":").replace('"""', "'''")
    normal = functools.partial(re.sub, r"\r\n?", "\n")
    assert normal(title) in normal(ast.get_docstring(tree, clean=False))


# A lone surrogate (\ud800) is refused by the front end with a position: tests/spec/test_hostile.py.
@pytest.mark.parametrize("payload", ["nul \x00 byte", "bell \x07"], ids=ascii)
def test_data_source_with_control_characters_is_escaped(payload: str) -> None:
    text = TINY.replace("data: {source: stdlib}", f"data: {{source: {quoted(payload)}}}")
    program = _program(text)
    assert_inert(program)


@pytest.mark.parametrize("payload", ["nul \x00 byte", "lone \ud800 surrogate"], ids=ascii)
def test_about_with_control_characters_is_rejected_or_inert(payload: str) -> None:
    text = put("about: plain", "about: {}", payload)
    try:
        data, source = load_yaml(text, "t.yaml")
        program = compile_spec(data, source).program
    except SpecError:
        return
    assert_inert(program)


def test_a_level_name_with_a_trailing_newline_never_breaks_the_program() -> None:
    text = put("  - name: outer", "  - name: {}", "outer\n")
    data, source = load_yaml(text, "t.yaml")
    try:
        program = compile_spec(data, source).program
    except SpecError:
        return
    compile(program, "program.py", "exec")


# --------------------------------------------------------------------------------- YAML


@pytest.fixture
def no_system(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    ran: list[str] = []
    monkeypatch.setattr(os, "system", lambda command: ran.append(command) or 0)
    return ran


@pytest.mark.parametrize("tagged", [
    '!!python/object/apply:os.system ["echo hi"]',
    '!!python/object/new:os.system ["echo hi"]',
    '!!python/name:os.system ""',
    '!<tag:yaml.org,2002:python/object/apply:os.system> ["echo hi"]',
])
def test_python_tags_are_rejected(tagged: str, no_system: list[str], tmp_path: Path) -> None:
    text = TINY.replace("about: plain", f"about: {tagged}")
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        read_document(str(path))
    (d,) = caught.value.diagnostics
    assert d.code == "E-YAML"
    assert "is not allowed in a spec" in d.message
    assert format_diagnostics([d], caught.value.source).startswith(f"{path}:3:8: error[E-YAML]")
    assert no_system == []


def test_python_tag_through_the_cli(no_system: list[str], tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(TINY.replace("about: plain",
                                 'about: !!python/object/apply:os.system ["echo hi"]'))
    result = CliRunner().invoke(nestgraph.cli.app, ["validate", str(path)])
    assert result.exit_code == 3
    assert "tag '!!python/object/apply:os.system' is not allowed" in result.output
    assert "Traceback" not in result.output
    assert no_system == []


def _laughs(levels: int, width: int) -> str:
    lines = ["nestgraph: 1", "name: lol", f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("text", "message"), [
    (_laughs(9, 9), "aliases expand the document by more than 100,000 values"),
    (_laughs(30, 2), "aliases expand the document by more than 100,000 values"),
    (_laughs(3, 60), "more than 100 aliases"),
    ("a: &a [*a]\n", "this alias refers to a value that contains it"),
], ids=["billion-laughs", "deep-doubling", "many-aliases", "self-reference"])
def test_alias_bombs_fail_fast(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(text, encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        read_document(str(path))
    assert time.perf_counter() - start < 1.0
    (d,) = caught.value.diagnostics
    assert message in d.message
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: error\[E-YAML\]",
                    format_diagnostics([d], caught.value.source))


def test_billion_laughs_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_laughs(9, 9), encoding="utf-8")
    start = time.perf_counter()
    result = CliRunner().invoke(nestgraph.cli.app, ["validate", str(path)])
    assert time.perf_counter() - start < 1.0
    assert result.exit_code == 3
    assert "billion laughs" in result.output


@pytest.mark.parametrize("added", [
    f"{INJECT}\n",  # a call
    f"# {INJECT}\n",  # not a call, but outside every string: the check must see it
    "x = eval('1')\n",
])
def test_the_inertness_check_catches_code_outside_strings(added: str) -> None:
    with pytest.raises(AssertionError):
        assert_inert(_program(TINY) + added)
