"""Every benchmark script still starts: it imports and prints its usage (`--help`). Nothing
else runs them, so a package name they import could otherwise be renamed under them unseen
(a name used only inside a function still needs the benchmark itself run)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name != "report.py")


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_prints_its_usage(script, monkeypatch, capsys):
    # In this process (torch is imported once), as `python benchmarks/SCRIPT --help` runs it.
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr("sys.argv", [script, "--help"])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(BENCHMARKS / script), run_name="__main__")
    assert stopped.value.code == 0
    assert "usage:" in capsys.readouterr().out
