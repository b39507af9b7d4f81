"""`nestgraph eval` through the command line: JSON, table, figure, and its user errors."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from typer.testing import CliRunner

from nestgraph.cli import app

runner = CliRunner()
QUICK = ("--steps", "1", "--batches", "1", "--samples", "2", "--sizes", "2,3",
         "--lengths", "1", "--stdlib-domains", "2", "--domain-bytes", "20000")


@pytest.fixture
def run(tiny_run, tmp_path):
    """A copy of the tiny run, so every test writes its own eval/ folder."""
    return shutil.copytree(tiny_run, tmp_path / "run")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("task", ["copy", "recall", "continual"])
def test_a_task_writes_its_json_and_prints_its_table(run, task):
    pytest.importorskip("matplotlib")
    result = invoke("eval", run, "--task", task, *QUICK)
    assert result.exit_code == 0, result.output
    doc = json.loads((run / "eval" / f"{task}.json").read_text())
    assert doc["task"] == task and doc["checkpoint_step"] == 2 and doc["spec"] == "cms"
    assert doc["version"] and doc["settings"]["samples"] == 2 and doc["results"]
    assert f"eval: {task}" in result.stdout
    assert (run / "eval" / f"{task}.png").is_file()


def test_levels_through_the_cli(run):
    result = invoke("eval", run, "--task", "levels", "--batches", "1")
    assert result.exit_code == 0, result.output
    doc = json.loads((run / "eval" / "levels.json").read_text())
    assert doc["results"]["rows"][0]["ablation"] == "none"


def test_continual_takes_domain_files(run, tmp_path):
    text = tmp_path / "poem.txt"
    text.write_text("Shall I compare thee to a summer's day?\n" * 60)
    result = invoke("eval", run, "--task", "continual", *QUICK, "--stdlib-domains", "1",
                    "--domain", text)
    assert result.exit_code == 0, result.output
    doc = json.loads((run / "eval" / "continual.json").read_text())
    assert doc["results"]["domains"][-1] == "poem.txt" and len(doc["results"]["domains"]) == 2


def test_without_matplotlib_the_json_is_still_written(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    result = invoke("eval", run, "--task", "copy", *QUICK)
    assert result.exit_code == 0, result.output
    assert "no figure drawn" in result.output and "matplotlib" in result.output
    assert (run / "eval" / "copy.json").is_file() and not (run / "eval" / "copy.png").exists()


def test_plot_draws_the_eval_results_too(run):
    pytest.importorskip("matplotlib")
    assert invoke("eval", run, "--task", "copy", *QUICK).exit_code == 0
    (run / "eval" / "copy.png").unlink()
    result = invoke("plot", run)
    assert result.exit_code == 0, result.output
    assert (run / "curves.png").is_file() and (run / "eval" / "copy.png").is_file()


@pytest.mark.parametrize(("args", "says"), [
    (("--task", "recal"), "did you mean 'recall'"),
    (("--task", "copy", "--lengths", "1,x"), "--lengths"),
    (("--task", "copy", "--sizes", "0"), "--sizes"),
    (("--task", "copy", "--samples", "0"), "--samples must be at least 1"),
    (("--task", "continual", "--steps", "0"), "--steps must be at least 1"),
    (("--task", "continual", "--stdlib-domains", "0"), "at least 2 domains"),
])
def test_mistakes_are_usage_errors_with_a_hint(run, args, says):
    result = invoke("eval", run, *args)
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output


def test_a_folder_that_is_not_a_run(tmp_path):
    result = invoke("eval", tmp_path, "--task", "copy")
    assert result.exit_code == 2 and "not a run folder" in result.output


def test_a_missing_domain_file_is_named(run, tmp_path):
    result = invoke("eval", run, "--task", "continual", *QUICK, "--domain", tmp_path / "nope")
    assert result.exit_code == 2 and "nope" in result.output
