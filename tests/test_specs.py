"""Every shipped spec is a test: it validates, compiles to its golden program, and trains."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nestgraph import load_spec
from nestgraph.compiler import compile_spec
from nestgraph.fmt.format import convert
from nestgraph.runtime.program import load_program
from nestgraph.runtime.train.loop import train
from nestgraph.runtime.train.progress import SilentReporter
from nestgraph.spec import read_document, shipped_specs
from nestgraph.testing import compile_build

GOLDEN = Path(__file__).resolve().parent / "golden"
SPECS = sorted(shipped_specs())
OPTIMIZER_SPECS = sorted(shipped_specs(folder="optimizers"))
ABLATION_SPECS = sorted(shipped_specs(folder="ablations"))  # NL Table 6, Titans' ablations
ALL_SPECS = SPECS + OPTIMIZER_SPECS + ABLATION_SPECS
FAST = ["train.eval_batches=1", "train.eval_every=0", "data.max_bytes=100000"]


@pytest.mark.parametrize("name", ALL_SPECS)
def test_spec_has_a_ng_twin_that_compiles_to_the_identical_program(name):
    folder = name.rpartition("/")[0]
    twin = shipped_specs(".ng", folder).get(name)
    assert twin is not None, f"no specs/{name}.ng: nestgraph fmt specs/{name}.yaml --to ng"
    from_yaml, from_ng = read_document(name), read_document(str(twin))
    assert load_spec(str(twin)).spec == load_spec(name).spec
    assert compile_spec(*from_ng).program == compile_spec(*from_yaml).program


@pytest.mark.parametrize("path", [*shipped_specs().values(), *shipped_specs(".ng").values(),
                                  *shipped_specs(folder="optimizers").values(),
                                  *shipped_specs(".ng", "optimizers").values(),
                                  *shipped_specs(folder="ablations").values(),
                                  *shipped_specs(".ng", "ablations").values()],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_file_is_formatted(path):
    text = path.read_text(encoding="utf-8")
    assert convert(text, path.name) == text, f"run: nestgraph fmt specs/{path.name}"


def test_the_reference_specs_ship():
    assert {"transformer", "cms", "hope", "hope-attention", "titans", "titans-mag"} <= set(SPECS)


@pytest.mark.parametrize("name", ALL_SPECS)
def test_spec_validates(name):
    loaded = load_spec(name)
    # file names may use hyphens; optimizer specs live in a folder
    assert loaded.spec.name == name.split("/")[-1].replace("-", "_")


@pytest.mark.parametrize("name", ALL_SPECS)
def test_spec_compiles_to_its_golden_program(name, overwrite):
    data, source = read_document(name)
    first, second = compile_spec(data, source), compile_spec(data, source)
    assert first.program == second.program  # byte-identical for the same spec
    for suffix, text in ((".program.py", first.program), (".resolved.yaml", first.resolved_yaml)):
        golden = GOLDEN / f"{name.replace('/', '-')}{suffix}"
        if overwrite:
            golden.parent.mkdir(exist_ok=True)
            golden.write_text(text)
        assert golden.is_file(), f"no golden file {golden.name}: run pytest --overwrite"
        assert text == golden.read_text(), f"{golden.name} changed: review, then --overwrite"


@pytest.mark.parametrize("name", ALL_SPECS)
def test_spec_trains_two_steps(name, tmp_path):
    program = load_program(compile_build(tmp_path / "build", name, FAST))
    cfg = dict(program.train, steps=2)
    result = train(program, cfg, program.data, out=tmp_path / "runs", reporter=SilentReporter())
    assert result.step == 2 and result.heldout_bpb > 0


def test_generated_program_runs_on_its_own(tmp_path):
    folder = compile_build(tmp_path / "build", "transformer", FAST + ["train.batch=2"])
    done = subprocess.run([sys.executable, str(folder / "program.py"), "--steps", "2",
                           "--out", str(tmp_path / "runs")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "done: step 2" in done.stderr
    assert list((tmp_path / "runs" / "transformer").iterdir())
