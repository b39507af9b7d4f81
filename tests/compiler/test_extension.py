"""A module kind added from outside the package, through the registry, as docs/extending.md
shows: the page's code runs, the compiler uses the record at every stage, training moves the new
module's weights, and nothing stays registered afterwards."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest

from nestgraph.compiler.kinds import MODULE_KINDS
from nestgraph.spec.schema import MODULE_MODELS

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "extending.md").read_text()
BLOCK = re.compile(r"^```python( file=\S+)?\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def page_blocks() -> tuple[str, str]:
    """(the runtime module's source, the registering script) as the page shows them."""
    (runtime,) = [body for name, body in BLOCK.findall(PAGE) if name == " file=toykinds.py"]
    (script,) = [body for name, body in BLOCK.findall(PAGE) if not name]
    return runtime, script


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    runtime, _ = page_blocks()
    (tmp_path / "toykinds.py").write_text(runtime)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("toykinds", None)


def test_the_page_example_runs_and_leaves_nothing_registered(in_tmp, capsys):
    _, script = page_blocks()
    exec(compile(script, "extending.md", "exec", dont_inherit=True), {"__name__": "extending"})  # noqa: S102
    assert capsys.readouterr().out.strip()  # sampled text
    assert "gain" not in MODULE_KINDS
    assert all(getattr(m, "model_fields", {}).get("type") is None
               or "gain" not in str(m.model_fields["type"].annotation) for m in MODULE_MODELS)
    run = next((in_tmp / "runs" / "gained").iterdir())
    assert json.loads((run / "env.json").read_text())  # a complete run folder


def test_the_compiler_uses_the_record_everywhere(in_tmp):
    import torch

    import nestgraph
    from nestgraph.compiler import compile_spec
    from nestgraph.compiler.kinds import registered
    from nestgraph.runtime.train.checkpoint import latest_checkpoint, load_checkpoint
    from nestgraph.spec import read_document

    _, script = page_blocks()
    names: dict = {"__name__": "extending"}
    # The page's definitions, without its last statement (the run): the test drives the stages.
    exec(compile(script.split("\nwith registered")[0], "extending.md", "exec", dont_inherit=True), names)  # noqa: S102
    gain, model, spec_text = names["GAIN"], names["GainSpec"], names["SPEC"]
    Path("gained.yaml").write_text(spec_text)
    with registered(gain, model):
        result = compile_spec(*read_document("gained.yaml", []))
        assert "import toykinds as toy" in result.program
        assert re.search(r"toy\.Gain\(\s*16,?\s*\)", result.program)  # the constructor Call
        outer = result.plan["levels"][0]
    # The cost model asks the record: the same kind costed at nothing is 16 FLOPs cheaper.
    free = dataclasses.replace(gain, flops=lambda ownable, spec, model, seq_len: 0)
    with registered(free, model):
        plain = compile_spec(*read_document("gained.yaml", [])).plan["levels"][0]
    assert outer["flops_per_token"] - plain["flops_per_token"] == 16
    with registered(gain, model):
        drawn = nestgraph.draw("gained.yaml")
        assert "gain" in drawn
        run = nestgraph.train(nestgraph.compile("gained.yaml", out="build/gained"))
        weights, _, _ = load_checkpoint(latest_checkpoint(run))
    trained = weights["layers.0.blocks.gain.body.weight"]
    assert trained.shape == (16,)
    assert not torch.equal(trained, torch.ones(16))  # the outer level trained the new module
    assert "gain" not in MODULE_KINDS


def test_a_spec_naming_an_unregistered_kind_is_a_spec_error(in_tmp):
    from nestgraph.compiler import check_document
    from nestgraph.errors import SpecError
    from nestgraph.spec import read_document

    _, script = page_blocks()
    names: dict = {"__name__": "extending"}
    exec(compile(script.split("\nwith registered")[0], "extending.md", "exec", dont_inherit=True), names)  # noqa: S102
    Path("gained.yaml").write_text(names["SPEC"])
    with pytest.raises(SpecError) as err:
        check_document(*read_document("gained.yaml", []))
    assert any("gain" in d.message for d in err.value.diagnostics)


def test_registering_a_tag_twice_is_refused():
    from nestgraph.compiler.kinds import register

    with pytest.raises(ValueError, match="already registered"):
        register(MODULE_KINDS["mlp"])
