"""What the command line passes on to training: the spec's folder for relative data paths,
`--steps` for an explicit resume, absolute paths for data typed on the command line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import nestgraph.compiler.buildfolder as build
from nestgraph.cli import app
from nestgraph.spec import find_spec_file
from nestgraph.testing import SMALL_CMS

runner = CliRunner()
QUICK = (*SMALL_CMS, "train.batch=1", "train.eval_batches=1", "train.eval_every=0")
TEXT = "the quick brown fox jumps over the lazy dog\n" * 200


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _spec_beside_data(folder: Path) -> Path:
    """cms.yaml copied into `folder` with `data.source: corpus.txt`, a file next to it."""
    folder.mkdir()
    (folder / "corpus.txt").write_text(TEXT)
    text = find_spec_file("cms").read_text()
    spec = folder / "cms.yaml"
    spec.write_text(text + "\ndata: {source: corpus.txt}\n" if "\ndata:" not in text else text)
    return spec


def _run_of(root: Path) -> Path:
    (run,) = (root / "runs" / "cms").iterdir()
    return run


def test_a_relative_data_source_is_taken_from_the_spec_folder(tmp_path, monkeypatch):
    spec = _spec_beside_data(tmp_path / "project")
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)  # no corpus.txt here
    done = invoke("compile", spec, *QUICK, "train.steps=1")
    assert done.exit_code == 0, done.output
    assert build.spec_folder_of(build.BUILD_ROOT / "cms") == (tmp_path / "project").resolve()
    done = invoke("train", build.BUILD_ROOT / "cms")
    assert done.exit_code == 0, done.output
    env = json.loads((_run_of(work) / "env.json").read_text())
    assert Path(env["data"]) == (tmp_path / "project" / "corpus.txt").resolve()


def test_data_typed_on_the_command_line_is_taken_from_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text(TEXT)
    assert invoke("compile", "cms", *QUICK, "train.steps=1").exit_code == 0
    done = invoke("train", "--data", "mine.txt")
    assert done.exit_code == 0, done.output
    env = json.loads((_run_of(tmp_path) / "env.json").read_text())
    assert Path(env["data"]) == (tmp_path / "mine.txt").resolve()
    assert build.absolute_data_overrides(["data.source=stdlib", "train.steps=2"]) == [
        "data.source=stdlib", "train.steps=2"]


def test_resume_with_more_steps_extends_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text(TEXT)
    assert invoke("compile", "cms", *QUICK, "train.steps=2").exit_code == 0
    assert invoke("train", "--data", "mine.txt").exit_code == 0
    run = _run_of(tmp_path)
    done = invoke("train", "--resume", run, "--steps", "3")
    assert done.exit_code == 0, done.output
    steps = [json.loads(line).get("step") for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 3
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-00000003"
