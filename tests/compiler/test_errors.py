"""Every mistake of a spec at once: one SpecError, positioned diagnostics, the CLI's exit code.

The headline file is specs/cms.yaml with five independent mistakes. The schema's salvage drops
the entries it rejects (the misspelled key, the module of unknown type) and the graph passes
run on the rest, so the period, ownership and flow mistakes are still found in the same run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import nestgraph.cli
from nestgraph import load_spec
from nestgraph.compiler import check_document
from nestgraph.errors import EXIT_SPEC, SpecError
from nestgraph.spec import read_document
from nestgraph.spec.source import format_diagnostics

FIVE_MISTAKES = """\
# specs/cms.yaml with five independent mistakes.
nestgraph: 1
name: cms
about: A Transformer whose MLP is a continuum memory system, written with five mistakes.

model:
  dim: 64
  layers: 2
  block: [attn, cms, memo]

modules:
  attn: {type: attention, heads: 4}
  memo: {type: memory, slots: 16}
  cms:
    type: mlp_chain
    variant: sequential
    blocks:
      fast: {expand: 2}
      mid: {expand: 2}
      slow: {expand: 2}
      spare: {expand: 2}

levels:
  - name: attention
    owns: attn.cache
    every: 1 token
    context: output of cms_mid
    objective: nadaraya_watson
    rule: {type: closed_form}
    lifetime: sequence
  - name: cms_fast
    owns: cms.fast
    every: 16 tokens
    context: tokens
    objective: next_token
    rule: {type: gd, lr: 1.0e-2}
    lifetime: sequence
    meta: first_order
  - name: cms_mid
    owns: cms.mid
    every: 128 tokens
    context: output of attention
    objective: next_token
    rule: {type: gd, lr: 3.0e-3}
    lifetime: sequence
    meta: first_order
  - name: cms_slow
    owns: cms.slow
    every: 4000 tokens
    context: tokens
    objective: next_token
    rule: {type: gd, lr: 1.0e-3}
    lifetime: stream
  - name: outer
    owns: [attn, embedding, norms]
    every: 1 step
    context: corpus
    objective: next_token
    rule: {type: adamw, lr: 3.0e-3, weight_decay: 0.1, warmup: 20, schedule: cosine}
    lifetime: run

train:
  steps: 200
  batch: 8
  seq_len: 256
  log_evry: 10
"""

# (line, column, code, message, the text the column points at), in reading order.
EXPECTED = [
    (13, 16, "E-SCHEMA", "unknown module type 'memory' for module 'memo'", "memory"),
    (21, 14, "E-OWN", "the weights 'cms.spare' are owned by no level", "{expand: 2}"),
    (27, 14, "E-FLOW", "context flow cycle: attention -> cms_mid -> attention",
     "output of cms_mid"),
    (49, 12, "E-PERIOD", "level 'cms_slow' updates every 4000 tokens, which is not a multiple "
     "of the 128 tokens of the faster level 'cms_mid'", "4000 tokens"),
    (66, 3, "E-SCHEMA", "unknown key 'log_evry' in train", "log_evry"),
]

EXPECTED_PATHS = [
    ["modules", "memo", "type"],
    ["modules", "cms", "blocks", "spare"],
    ["levels", 0, "context"],
    ["levels", 3, "every"],
    ["train", "log_evry"],
]

# How to fix each mistake on its own (old text -> new text), in the order of EXPECTED.
FIXES = {
    "unknown module type": [("  memo: {type: memory, slots: 16}\n", ""),
                            ("block: [attn, cms, memo]", "block: [attn, cms]")],
    "unowned weights": [("      spare: {expand: 2}\n", "")],
    # (both contexts: 'output of' is a context this version does not run)
    "flow cycle": [("context: output of cms_mid", "context: tokens"),
                   ("context: output of attention", "context: tokens")],
    "period": [("every: 4000 tokens", "every: 4096 tokens")],
    "misspelled key": [("log_evry", "log_every")],
}
MISTAKES = list(FIXES)


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "cms.yaml"
    path.write_text(FIVE_MISTAKES, encoding="utf-8")
    return path


def _raised(text: str, path: Path) -> SpecError:
    path.write_text(text, encoding="utf-8")
    data, source = read_document(str(path))
    with pytest.raises(SpecError) as caught:
        check_document(data, source)
    return caught.value


def test_the_expected_positions_are_where_the_mistakes_are() -> None:
    lines = FIVE_MISTAKES.split("\n")
    for line, col, _, _, text in EXPECTED:
        assert lines[line - 1][col - 1:].startswith(text), (line, col, text)


def test_five_mistakes_give_five_diagnostics_in_one_error(spec_file: Path) -> None:
    err = _raised(FIVE_MISTAKES, spec_file)
    assert len(err.diagnostics) == 5
    assert err.exit_code == EXIT_SPEC
    assert str(err) == "5 errors in the spec"
    assert sorted(d.code for d in err.diagnostics) == sorted(e[2] for e in EXPECTED)

    shown = format_diagnostics(err.diagnostics, err.source)
    blocks = shown.split("\n\n")
    assert blocks[-1] == "5 errors"
    assert len(blocks) == 6
    for block, (line, col, code, message, _) in zip(blocks, EXPECTED, strict=False):
        head, _, gutter_line, _ = block.split("\n", 3)
        assert head == f"{spec_file}:{line}:{col}: error[{code}]: {message}"
        assert gutter_line == f"{line} | {FIVE_MISTAKES.split(chr(10))[line - 1]}".rstrip()


def test_load_spec_raises_the_same_five(spec_file: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(str(spec_file))
    messages = sorted(d.message for d in caught.value.diagnostics)
    assert messages == sorted(e[3] for e in EXPECTED)


@pytest.mark.parametrize("mistake", MISTAKES)
def test_the_five_mistakes_are_independent(mistake: str, tmp_path: Path) -> None:
    # Fixing one mistake removes its diagnostic and leaves the other four as they were.
    text = FIVE_MISTAKES
    for old, new in FIXES[mistake]:
        assert text.count(old) == 1
        text = text.replace(old, new)
    err = _raised(text, tmp_path / "cms.yaml")
    left = [e for i, e in enumerate(EXPECTED) if i != MISTAKES.index(mistake)]
    assert sorted(d.message for d in err.diagnostics) == sorted(e[3] for e in left)
    assert sorted(d.code for d in err.diagnostics) == sorted(e[2] for e in left)


def test_cli_validate_prints_all_five_and_exits_3(spec_file: Path) -> None:
    result = CliRunner().invoke(nestgraph.cli.app, ["validate", str(spec_file)])
    assert result.exit_code == EXIT_SPEC == 3
    assert "Traceback" not in result.output
    assert result.stdout == ""  # diagnostics go to stderr
    for line, col, code, message, _ in EXPECTED:
        assert f"{spec_file}:{line}:{col}: error[{code}]: {message}\n" in result.stderr
    assert result.stderr.rstrip().endswith("\n5 errors")
    # Reading order: the heads appear in the order of their lines.
    heads = [result.stderr.index(f"{spec_file}:{line}:{col}:") for line, col, *_ in EXPECTED]
    assert heads == sorted(heads)


def test_cli_validate_json_lists_five_positioned_entries(spec_file: Path) -> None:
    result = CliRunner().invoke(nestgraph.cli.app,
                                ["validate", str(spec_file), "--format", "json"])
    assert result.exit_code == 3
    assert "Traceback" not in result.output
    entries = json.loads(result.stdout)
    assert len(entries) == 5
    got = [(e["line"], e["col"], e["code"], e["message"]) for e in entries]
    assert got == [(line, col, code, message) for line, col, code, message, _ in EXPECTED]
    assert [e["path"] for e in entries] == EXPECTED_PATHS
    for e in entries:
        assert e["file"] == str(spec_file)
        assert e["severity"] == "error"
        assert isinstance(e["end_col"], int) and e["end_col"] > e["col"]
        assert e["override"] is None


def test_cli_validate_of_the_fixed_file_is_ok(tmp_path: Path) -> None:
    text = FIVE_MISTAKES
    for fixes in FIXES.values():
        for old, new in fixes:
            text = text.replace(old, new)
    path = tmp_path / "cms.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(nestgraph.cli.app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ("spec OK: cms (5 levels, fastest first: attention, cms_fast, "
                             "cms_mid, outer, cms_slow)\n")
