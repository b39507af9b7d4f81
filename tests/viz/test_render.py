"""Pictures: SVGs render where Graphviz is installed (CI installs it); without it the DOT text
is still written and the command says how to get the picture, with exit code 6."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nestgraph.cli import app
from nestgraph.spec import shipped_specs
from nestgraph.testing import compile_build, compiled_plan
from nestgraph.viz import render
from nestgraph.viz.views import VIEWS, text

runner = CliRunner()
SPECS = sorted(shipped_specs())
needs_dot = pytest.mark.skipif(not render.have_dot(), reason="Graphviz's dot is not installed")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def no_dot(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None)
    monkeypatch.setenv("PATH", "")  # and the graphviz package cannot find it either


@needs_dot
@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("name", SPECS)
def test_svg_renders(name: str, view: str) -> None:
    plan, spec = compiled_plan(name)
    svg = render.render(text(plan, spec, view, "dot"), "svg").decode("utf-8")
    assert svg.lstrip().startswith(("<?xml", "<svg")) and svg.rstrip().endswith("</svg>")
    if view == "levels":
        titles = re.findall(r"<title>(cluster_level_\w+)</title>", svg)
        assert sorted(titles) == sorted(f"cluster_level_{lv['name']}" for lv in plan["levels"])
        for lv in plan["levels"]:
            assert f">{lv['name']}<" in svg and f"every {lv['every']}" in svg


@needs_dot
@pytest.mark.parametrize("depth", [0, 2])
@pytest.mark.parametrize("name", ["hope", "optimizers/m3"])
def test_every_depth_renders(name: str, depth: int) -> None:
    plan, spec = compiled_plan(name)
    levels = text(plan, spec, "levels", "dot", depth=depth)
    assert render.render(levels, "svg").decode("utf-8").rstrip().endswith("</svg>")


@needs_dot
def test_graph_command_writes_a_picture(tmp_path: Path) -> None:
    out = tmp_path / "hope.svg"
    result = invoke("graph", "hope", "-o", out)
    assert result.exit_code == 0, result.output
    assert out.read_text().rstrip().endswith("</svg>")


def test_graph_without_dot_writes_the_dot_file_and_exits_6(tmp_path: Path, no_dot) -> None:
    out = tmp_path / "hope.svg"
    result = invoke("graph", "hope", "-o", out)
    assert result.exit_code == 6
    assert "Graphviz's 'dot' program is not installed" in result.output
    assert "apt-get install graphviz" in result.output
    assert (tmp_path / "hope.dot").read_text().startswith('digraph "levels"')
    assert not out.exists()


def test_compile_writes_levels_dot_even_without_dot(tmp_path: Path, no_dot) -> None:
    result = invoke("compile", "transformer", "-o", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "levels.dot").is_file()
    assert not (tmp_path / "b" / "levels.svg").exists()
    assert "no levels.svg" in result.output


@needs_dot
def test_compile_draws_levels_svg_with_dot(tmp_path: Path) -> None:
    result = invoke("compile", "transformer", "-o", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "levels.svg").read_text().rstrip().endswith("</svg>")


def test_graph_from_a_build_folder_draws_what_the_spec_draws(tmp_path: Path) -> None:
    folder = compile_build(tmp_path / "b", "hope")
    for view in VIEWS:
        from_build = invoke("graph", folder, "--view", view)
        from_spec = invoke("graph", "hope", "--view", view)
        assert from_build.exit_code == 0 and from_build.output == from_spec.output


def test_graph_text_formats_and_mistakes(tmp_path: Path) -> None:
    assert invoke("graph", "cms", "--format", "mermaid").output.startswith("flowchart TB")
    assert invoke("graph", "cms", "--view", "schedule", "-o", tmp_path / "s.json").exit_code == 0
    assert '"hyperperiod_tokens": 4096' in (tmp_path / "s.json").read_text()
    assert invoke("graph", "cms", "--direction", "LR").output.count("rankdir=LR") == 1
    for args, phrase in ((["--view", "nope"], "unknown view"),
                         (["--format", "gif"], "unknown format"),
                         (["-o", tmp_path / "x.txt"], "cannot tell the format")):
        result = invoke("graph", "cms", *args)
        assert result.exit_code == 2 and phrase in result.output


def test_graph_dash_is_standard_output(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("graph", "cms", "--format", "mermaid", "-o", "-")
    assert result.exit_code == 0 and result.output.startswith("flowchart TB")
    assert not (tmp_path / "-").exists()
    picture = invoke("graph", "cms", "--format", "png", "-o", "-")
    assert picture.exit_code == 2 and "cannot go to standard output" in picture.output
