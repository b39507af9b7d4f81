"""Build folders from the command line: the level table, the latest build, training a spec,
train-time overrides, which stream carries what, and a folder's program as code."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

import nestgraph.cli.summary as summary
from nestgraph.cli import app
from nestgraph.testing import SMALL_CMS

runner = CliRunner()
QUICK = (*SMALL_CMS, "train.steps=1", "train.batch=1")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _plan(**level):
    lv = {"name": "projections", "every": "8 tokens", "lifetime": "sequence",
          "context": "tokens", "rule": {"type": "adamw"}, "params": 32_768_000,
          "flops_per_token": 262_144_000, "optimizer_state": 0, "owns": ["selfmod"],
          "initial_states": [], "kind": "in_context"}
    lv.update(level)
    return {"name": "hope", "levels": [lv], "chunk": 8,
            "totals": {"params": lv["params"], "flops_per_token": lv["flops_per_token"]}}


def test_the_table_in_a_pipe_is_plain_and_complete(capsys):
    out = io.StringIO()  # not a terminal
    summary.print_summary(_plan(), Path("build/hope"), out)
    text = out.getvalue()
    assert "32,768,000" in text and "262,144,000" in text and "projections" in text
    assert "adamw" in text and "…" not in text
    assert not any(ch in text for ch in "┃│━─")  # no box drawing in a log
    assert "wrote build/hope/program.py" in capsys.readouterr().err


def test_plain_table_widens_columns_to_the_widest_cell():
    text = summary.plain_table([("a" * 30, "1,000,000")], ("level", "params"))
    header, row = text.splitlines()
    assert row.startswith("a" * 30) and row.endswith("1,000,000")
    assert len(header) == len(row)


def test_user_strings_in_the_summary_are_escaped():
    out = io.StringIO()
    summary.print_summary(_plan(name="evil\x1b[2J", owns=["x\x1b]0;t\x07"]), Path("b"), out)
    text = out.getvalue()
    assert "\x1b" not in text and "\\x1b" in text and "\x07" not in text


def test_compile_output_in_a_pipe_keeps_every_number(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("compile", "hope")
    assert result.exit_code == 0, result.output
    for name in ("projections", "cms_fast", "outer", "adamw"):
        assert name in result.stdout
    assert "…" not in result.stdout
    assert "32,768" in result.stdout
    # Where the build went is status, on stderr.
    assert "wrote" not in result.stdout and "wrote" in result.stderr


def test_the_latest_build_is_the_last_compiled_wherever_it_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("compile", "cms", *QUICK).exit_code == 0
    elsewhere = tmp_path / "elsewhere" / "mine"
    assert invoke("compile", "transformer", "-o", elsewhere, "train.steps=1").exit_code == 0
    latest = Path((tmp_path / "build" / "latest").read_text().strip())
    assert latest == elsewhere.resolve()


def test_train_a_spec_compiles_it_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "cms", *QUICK, "model.dim=8")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "build" / "cms" / "program.py").is_file()
    assert "dim: 8" in (tmp_path / "build" / "cms" / "spec.resolved.yaml").read_text()
    assert "compiling cms" in result.stderr
    assert list((tmp_path / "runs" / "cms").iterdir())


def test_log_lines_go_to_stderr_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("compile", "cms", *QUICK).exit_code == 0
    result = invoke("train")
    assert result.exit_code == 0, result.output
    assert "using the most recent build" in result.stderr
    assert "most recent build" not in result.stdout
    assert "curves" not in result.stdout
    assert "curves" in result.stderr


def test_train_overrides_get_the_positioned_did_you_mean_message(tmp_path):
    build = tmp_path / "b"
    assert invoke("compile", "cms", *QUICK, "-o", build).exit_code == 0
    result = invoke("train", build, "train.stpes=3")
    assert result.exit_code == 3, result.output
    assert "override #1 'train.stpes=3'" in result.output
    assert "steps" in result.output.split("override #1", 1)[1]
    assert "Extra inputs are not permitted" not in result.output
    deleted = invoke("train", build, "~data.stuff")
    assert deleted.exit_code == 3 and "override #1 '~data.stuff'" in deleted.output


def test_model_overrides_on_a_build_name_the_override(tmp_path):
    build = tmp_path / "b"
    assert invoke("compile", "cms", *QUICK, "-o", build).exit_code == 0
    result = invoke("train", build, "train.batch=1", "model.dim=8")
    assert result.exit_code == 3
    assert "override #2 'model.dim=8'" in result.output and "recompile" in result.output


@pytest.fixture
def trained(tmp_path):
    build = tmp_path / "b"
    assert invoke("compile", "cms", *QUICK, "-o", build).exit_code == 0
    return build


def test_an_edited_program_is_refused_unless_trusted(trained, tmp_path):
    program = trained / "program.py"
    program.write_text(program.read_text() + "\nprint('hello from the folder')\n")
    refused = invoke("train", trained, "--out", tmp_path / "runs")
    assert refused.exit_code == 5, refused.output
    assert "program.py" in refused.output and "--trust-program" in refused.output
    assert "hello from the folder" not in refused.output
    trusted = invoke("train", trained, "--out", tmp_path / "runs", "--trust-program")
    assert trusted.exit_code == 0, trusted.output


def test_generate_checks_the_run_folder_program(trained, tmp_path):
    assert invoke("train", trained, "--out", tmp_path / "runs").exit_code == 0
    run = next((tmp_path / "runs" / "cms").iterdir())
    assert invoke("generate", run, "--tokens", "2").exit_code == 0
    program = run / "program.py"
    program.write_text(program.read_text().replace("SPEC_NAME = 'cms'", "SPEC_NAME = 'x'"))
    refused = invoke("generate", run, "--tokens", "2")
    assert refused.exit_code == 5, refused.output
    assert invoke("generate", run, "--tokens", "2", "--trust-program").exit_code == 0


def test_a_folder_without_its_resolved_spec_is_refused(trained, tmp_path):
    (trained / "spec.resolved.yaml").unlink()
    result = invoke("train", trained, "--out", tmp_path / "runs")
    assert result.exit_code == 5 and "spec.resolved.yaml" in result.output


def test_a_build_folder_that_cannot_be_written_is_an_environment_problem(tmp_path):
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder\n")
    result = invoke("compile", "cms", "-o", in_the_way / "cms")
    assert result.exit_code == 6, result.output
    assert "internal error" not in result.output
    assert str(in_the_way / "cms") in result.output


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0,
                    reason="needs a user whose writes a read-only folder refuses")
def test_a_read_only_build_folder_is_an_environment_problem(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        result = invoke("compile", "cms", "-o", locked / "cms")
    finally:
        locked.chmod(stat.S_IRWXU)
    assert result.exit_code == 6, result.output
    assert "internal error" not in result.output
    assert str(locked / "cms") in result.output


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("columns", ["60", "200"])
def test_a_terminal_never_gets_cut_cells(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    out = _Terminal()
    summary.print_summary(_plan(), Path("build/hope"), out)
    text = out.getvalue()
    assert "32,768,000" in text and "262,144,000" in text and "projections" in text
    assert "…" not in text


def test_a_bad_steps_option_is_named_as_typed(trained):
    result = invoke("train", trained, "--steps", "-1")
    assert result.exit_code == 3, result.output
    assert "'--steps -1'" in result.output
    assert "spec.resolved.yaml:" not in result.output
