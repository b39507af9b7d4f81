"""Levels whose updates no prediction can read: refused (sequence lifetime) or warned about
(a level slower than the whole run), each at its `every:` with a fix hint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import nestgraph.cli
from nestgraph.compiler import check_document
from nestgraph.compiler.ir import facts
from nestgraph.errors import EXIT_SPEC, SpecError
from nestgraph.periods import never_fires, never_updates, shorter_period
from nestgraph.spec import read_document
from nestgraph.testing import diagnostics_of, level_of, shipped_data, validated_graph

MID, SLOW, OUTER = 2, 3, 4  # positions in specs/cms.yaml


def warnings_of(g) -> list:
    return facts(g).warnings


@pytest.mark.parametrize(("period", "refused"), [(255, False), (256, True), (257, True),
                                                 (128, False), (1, False)])
def test_never_updates_from_the_sequence_length_on(period: int, refused: bool) -> None:
    assert never_updates("in_context", "sequence", period, 256) is refused
    assert never_updates("memory", "sequence", period, 256) is refused
    assert not never_updates("in_context", "stream", period, 256)
    assert not never_updates("nonparametric", "sequence", period, 256)


@pytest.mark.parametrize(("seq_len", "period"), [(256, 128), (12, 6), (9, 3), (7, 1), (2, 1)])
def test_the_suggested_period_is_the_largest_proper_divisor(seq_len: int, period: int) -> None:
    assert shorter_period(seq_len) == period
    assert seq_len % period == 0 and period < seq_len


def test_shorter_period_of_a_huge_prime_is_fast() -> None:
    assert shorter_period(2**31 - 1) == 1


def test_a_period_equal_to_the_sequence_is_refused_at_its_every() -> None:
    data = shipped_data("cms")
    level_of(data, "cms_mid")["every"] = "256 tokens"
    (d,) = diagnostics_of(validated_graph(data))
    assert (d.code, d.path, d.severity) == ("E-PERIOD", ("levels", MID, "every"), "error")
    assert d.message == ("level 'cms_mid' would never change a prediction: its first update, "
                         "at token 256, comes after the sequence's last token (256 tokens), "
                         "and its state resets every sequence")
    assert "try 'every: 128 tokens' (it divides 256)" in d.hint
    assert "'lifetime: stream'" in d.hint


def test_a_memory_level_as_long_as_the_sequence_is_refused() -> None:
    data = shipped_data("titans")
    data["train"]["seq_len"] = 16  # the memory writes every 16 tokens
    (d,) = diagnostics_of(validated_graph(data))
    assert d.path == ("levels", 0, "every") and "never change a prediction" in d.message
    assert "try 'every: 8 tokens'" in d.hint


def test_the_same_period_on_a_stream_level_is_accepted() -> None:
    data = shipped_data("cms")
    level_of(data, "cms_mid")["every"] = "256 tokens"
    level_of(data, "cms_mid")["lifetime"] = "stream"
    g = validated_graph(data)
    assert diagnostics_of(g) == [] and warnings_of(g) == []


def test_cli_validate_shows_the_refusal_at_its_place(tmp_path: Path) -> None:
    text = Path("specs/cms.yaml").read_text(encoding="utf-8")
    bad = text.replace("every: 128 tokens", "every: 256 tokens")
    assert bad.count("every: 256 tokens") == 1
    path = tmp_path / "cms.yaml"
    path.write_text(bad, encoding="utf-8")
    line = bad.split("\n").index("    every: 256 tokens") + 1
    result = CliRunner().invoke(nestgraph.cli.app, ["validate", str(path)])
    assert result.exit_code == EXIT_SPEC
    assert "Traceback" not in result.output
    assert f"{path}:{line}:12: error[E-PERIOD]: level 'cms_mid' would never" in result.stderr
    assert "= help: a sequence-lifetime level needs a period shorter" in result.stderr


def test_train_refuses_a_seq_len_that_makes_a_level_unreadable(tmp_path: Path) -> None:
    from nestgraph.compiler.train_config import train_config
    from nestgraph.runtime.program import load_program
    from nestgraph.testing import compile_build

    program = load_program(compile_build(tmp_path / "b", "cms"))
    train_config(program, ["train.seq_len=512"], steps=None, data=None)  # 128 < 512: fine
    with pytest.raises(SpecError) as err:
        train_config(program, ["train.seq_len=128"], steps=None, data=None)
    assert any("'cms_mid'" in d.message and "never update" in d.message
               for d in err.value.diagnostics)


# ------------------------------------------------------------------------------ warnings


def test_never_fires_counts_the_whole_run() -> None:
    assert never_fires(4097, steps=16, seq_len=256)
    assert not never_fires(4096, steps=16, seq_len=256)  # fires after the last step
    assert not never_fires(10**9, steps=0, seq_len=256)  # nothing is trained


def test_a_stream_level_slower_than_the_run_is_a_warning() -> None:
    data = shipped_data("cms")
    data["train"]["steps"] = 10  # 2560 tokens per lane; cms_slow fires every 4096
    g = validated_graph(data)
    assert diagnostics_of(g) == []
    (w,) = warnings_of(g)
    assert (w.code, w.path, w.severity) == ("W-PERIOD", ("levels", SLOW, "every"), "warning")
    assert w.message == ("level 'cms_slow' never updates in this run: it fires every 4096 "
                         "tokens per lane, and 10 steps of 256 tokens read 2560")
    assert w.hint == "train for at least 16 steps (train.steps=16), or shorten its period"


def test_a_step_level_slower_than_the_run_is_a_warning() -> None:
    data = shipped_data("cms")
    level_of(data, "outer")["every"] = "300 steps"
    level_of(data, "cms_slow")["every"] = "76800 tokens"  # keeps the nesting of periods
    g = validated_graph(data)
    assert diagnostics_of(g) == []
    outer, slow = sorted(warnings_of(g), key=lambda w: w.path, reverse=True)
    assert (outer.path, slow.path) == (("levels", OUTER, "every"), ("levels", SLOW, "every"))
    assert "train.steps=300" in outer.hint and "train.steps=300" in slow.hint


def test_cli_validate_prints_the_warning_and_accepts(tmp_path: Path) -> None:
    path = tmp_path / "cms.yaml"
    text = Path("specs/cms.yaml").read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    line = text.split("\n").index("    every: 4096 tokens") + 1
    result = CliRunner().invoke(nestgraph.cli.app, ["validate", str(path), "train.steps=10"])
    assert result.exit_code == 0, result.output
    assert f"{path}:{line}:12: warning[W-PERIOD]: level 'cms_slow' never updates" \
        in result.stderr
    assert result.stderr.rstrip().endswith("1 warning")
    assert result.stdout.startswith("spec OK: cms")


def test_a_warning_is_not_an_error(tmp_path: Path) -> None:
    data, source = read_document("cms", ["train.steps=10"])
    spec, g = check_document(data, source)  # does not raise
    assert spec.train.steps == 10 and len(facts(g).warnings) == 1


def test_the_warning_in_json_says_its_severity() -> None:
    from nestgraph.spec.source import diagnostics_as_json

    data, source = read_document("cms", ["train.steps=10"])
    _, g = check_document(data, source)
    (entry,) = diagnostics_as_json(facts(g).warnings, source)
    assert entry["severity"] == "warning" and entry["code"] == "W-PERIOD"
    assert json.dumps(entry)


def test_cli_validate_json_carries_the_warnings_on_stdout() -> None:
    result = CliRunner().invoke(nestgraph.cli.app,
                                ["validate", "cms", "train.steps=10", "--format", "json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["ok"] is True
    assert [w["code"] for w in answer["warnings"]] == ["W-PERIOD"]
    assert "warning[" not in result.stderr  # said once, in the JSON


def test_cli_compile_prints_the_warning_once(tmp_path: Path) -> None:
    result = CliRunner().invoke(nestgraph.cli.app, ["compile", "cms", "train.steps=10",
                                                    "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning[W-PERIOD]: level 'cms_slow' never updates") == 1


def test_the_nesting_hint_never_suggests_a_refused_period() -> None:
    data = shipped_data("cms")
    level_of(data, "cms_mid")["every"] = "250 tokens"  # nearest multiple of 16: 256 = seq_len
    (d,) = diagnostics_of(validated_graph(data))
    assert d.path == ("levels", MID, "every")
    assert d.hint == "nested levels need periods that divide: try 128 tokens"
    level_of(data, "cms_mid")["every"] = "128 tokens"
    assert diagnostics_of(validated_graph(data)) == []
