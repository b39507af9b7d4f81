"""The front door: `import nestgraph` is cheap, every exported name resolves, and the three lines
the README shows take a spec to samples."""

from __future__ import annotations

import subprocess
import sys

import pytest

import nestgraph


def test_import_loads_no_heavy_package():
    code = ("import sys, nestgraph; heavy = {'torch', 'networkx', 'pydantic', 'typer'} & "
            "set(sys.modules); print(sorted(heavy))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert shown == "[]"


@pytest.mark.parametrize("name", sorted(set(nestgraph.__all__) - {"__version__"}))
def test_every_exported_name_resolves(name):
    assert getattr(nestgraph, name) is not None
    assert name in dir(nestgraph)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        nestgraph.trian  # noqa: B018


def test_the_readme_three_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small = ["model.dim=16", "model.layers=1", "train.steps=2", "train.batch=2",
             "train.seq_len=256", "train.eval_every=2", "data.max_bytes=20000"]
    run = nestgraph.train(nestgraph.compile("cms", small))
    text = nestgraph.sample(run, "def ", tokens=8)
    assert isinstance(text, str) and text  # the continuation (bytes decoded leniently)
    assert (run / "metrics.jsonl").is_file()


def test_load_spec_and_errors_are_the_public_types(tmp_path):
    assert nestgraph.load_spec("cms", ["model.dim=32"]).spec.model.dim == 32
    bad = tmp_path / "bad.yaml"
    bad.write_text("nestgraph: 1\nname: bad\n")
    with pytest.raises(nestgraph.SpecError) as err:
        nestgraph.load_spec(str(bad))
    assert isinstance(err.value, nestgraph.NestgraphError)
