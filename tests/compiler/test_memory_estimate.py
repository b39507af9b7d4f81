"""The compiler estimates the memory training needs and refuses, at the value that dominates
the estimate, a model or batch that cannot fit in the machine's memory (or the override's)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nestgraph.cli import app
from nestgraph.compiler import compile_spec
from nestgraph.compiler.ir import facts
from nestgraph.compiler.passes.cost import MEMORY_LIMIT_ENV, memory_limit
from nestgraph.errors import EXIT_SPEC, EnvironmentProblem, SpecError
from nestgraph.testing import shipped_data

SPECS = Path(__file__).resolve().parents[2] / "specs"


def refused(data: dict):
    with pytest.raises(SpecError) as caught:
        compile_spec(data, stop_after="cost")
    (d,) = caught.value.diagnostics
    assert d.code == "E-MEMORY"
    return d


def test_a_model_of_dim_65536_is_refused_at_the_dim(monkeypatch) -> None:
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "128G")
    data = shipped_data("transformer")
    data["model"]["dim"] = 65536
    d = refused(data)
    assert d.path == ("model", "dim")
    assert re.search(r"needs about 1\.\d TiB .* more than the 128\.0 GiB", d.message), d.message
    assert "model.dim" in d.hint


def test_a_model_too_large_is_refused_at_the_dim_whatever_dominates(monkeypatch) -> None:
    # Hope's fast weights dominate its estimate, but its weights alone exceed the memory.
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "64G")
    data = shipped_data("hope")
    data["model"]["dim"] = 65536
    assert refused(data).path == ("model", "dim")


def test_a_batch_too_large_is_refused_at_the_batch_with_one_that_fits(monkeypatch) -> None:
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1G")
    data = shipped_data("transformer")
    data["train"]["batch"] = 4096
    d = refused(data)
    assert d.path == ("train", "batch")
    fits = int(re.search(r"train\.batch = (\d+)", d.hint).group(1))
    data["train"]["batch"] = fits
    compile_spec(data, stop_after="cost")
    data["train"]["batch"] = fits + 1
    refused(data)


def test_a_sequence_too_long_for_one_lane_is_refused_at_seq_len(monkeypatch) -> None:
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "16M")
    data = shipped_data("transformer")
    data["train"]["seq_len"] = 65536
    assert refused(data).path == ("train", "seq_len")


def test_the_shipped_spec_fits_and_zero_turns_the_check_off(monkeypatch) -> None:
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1G")
    out = compile_spec(shipped_data("hope"), stop_after="cost")
    memory = facts(out.graph).memory
    assert 0 < memory["weights"] < memory["activations"] + memory["fast_weights"] < 1 << 30
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "0")
    data = shipped_data("transformer")
    data["train"]["batch"] = 65536
    compile_spec(data, stop_after="cost")


def test_the_limit_is_the_physical_memory_unless_overridden(monkeypatch) -> None:
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    assert memory_limit() > 1 << 28
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1.5K")
    assert memory_limit() == 1536
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "lots")
    with pytest.raises(EnvironmentProblem, match=MEMORY_LIMIT_ENV):
        memory_limit()


def test_compile_prints_the_estimate_at_its_place(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "64G")
    path = tmp_path / "big.yaml"
    path.write_text((SPECS / "transformer.yaml").read_text().replace("dim: 64", "dim: 65536"))
    result = CliRunner().invoke(app, ["compile", str(path), "-o", str(tmp_path / "b")])
    assert result.exit_code == EXIT_SPEC, result.output
    assert re.search(r"big\.yaml:\d+:8: error\[E-MEMORY\]: training needs about", result.output)
    assert not (tmp_path / "b").exists()
