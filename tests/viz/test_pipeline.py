"""The pipeline picture in docs/architecture.md is drawn from compiler.STAGES (golden file,
--overwrite), and Graphviz renders it where Graphviz is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nestgraph.compiler import STAGE_NAMES
from nestgraph.viz.pipeline import pipeline_dot

DOCS = Path(__file__).resolve().parents[2] / "docs"
GOLDEN = DOCS / "img" / "pipeline.dot"


def test_the_picture_is_the_pipeline(overwrite: bool) -> None:
    dot = pipeline_dot()
    for name in STAGE_NAMES:
        assert f'"stage:{name}"' in dot
    if overwrite:
        GOLDEN.write_text(dot, encoding="utf-8")
        if shutil.which("dot"):
            subprocess.run(["dot", "-Tsvg", str(GOLDEN), "-o", str(GOLDEN.with_suffix(".svg"))],
                           check=True)
    assert dot == GOLDEN.read_text(encoding="utf-8"), "the pipeline changed: run --overwrite"


def test_the_architecture_page_shows_it_and_names_every_stage() -> None:
    page = (DOCS / "architecture.md").read_text(encoding="utf-8")
    assert "img/pipeline.svg" in page
    missing = [name for name in STAGE_NAMES if f"`{name}`" not in page]
    assert not missing, f"stages the page does not name: {missing}"


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_graphviz_renders_it(tmp_path) -> None:
    out = tmp_path / "pipeline.svg"
    subprocess.run(["dot", "-Tsvg", str(GOLDEN), "-o", str(out)], check=True)
    assert out.read_text().lstrip().startswith("<?xml")
