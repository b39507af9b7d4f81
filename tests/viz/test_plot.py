"""nestgraph plot: curves from a run's metrics.jsonl, and a clear message without matplotlib."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nestgraph.cli import app
from nestgraph.testing import compiled_plan

runner = CliRunner()


def fake_run(folder: Path) -> Path:
    """A run folder as training leaves it: metrics, settings, plan."""
    run = folder / "runs" / "hope" / "20261202-000000"
    run.mkdir(parents=True)
    records = [{"step": 0, "heldout_bpb": 8.0}]
    records += [{"step": s, "loss": 5.0 - s / 10, "tokens_per_s": 400.0 + s} for s in
                range(1, 21)]
    records += [{"step": 20, "heldout_bpb": 5.5}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "run.json").write_text(json.dumps({"train": {"batch": 8, "seq_len": 256}}))
    (run / "plan.json").write_text(json.dumps(compiled_plan("hope")[0]))
    return run


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_plot_writes_the_curves(tmp_path: Path, suffix: str, magic: bytes) -> None:
    pytest.importorskip("matplotlib")
    run = fake_run(tmp_path)
    out = tmp_path / f"curves{suffix}"
    result = runner.invoke(app, ["plot", str(run), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(magic)


def test_plot_defaults_into_the_run_folder(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run = fake_run(tmp_path)
    assert runner.invoke(app, ["plot", str(run)]).exit_code == 0
    assert (run / "curves.png").is_file()


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    result = runner.invoke(app, ["plot", str(fake_run(tmp_path))])
    assert result.exit_code == 6
    assert "matplotlib is not installed" in result.output and "nestgraph[plot]" in result.output


def test_plot_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plot", str(tmp_path)])
    assert result.exit_code == 2 and "not a run folder" in result.output


def test_update_counts_come_from_what_the_run_recorded() -> None:
    from nestgraph.viz.plot import update_series

    plan = compiled_plan("hope")[0]  # planned at seq_len 256
    records = [{"step": 0, "heldout_bpb": 8.0}]
    records += [{"step": s, "loss": 1.0, "updates/cms_fast": 2, "updates/outer": 1}
                for s in (1, 2, 3)]
    series = update_series(records, plan, {"seq_len": 64})
    assert series["cms_fast"] == ([0, 1, 2, 3], [0, 2, 4, 6])
    assert series["outer"] == ([0, 1, 2, 3], [0, 1, 2, 3])


def test_update_counts_of_an_older_run_use_its_own_seq_len() -> None:
    from nestgraph.viz.plot import update_series

    plan = compiled_plan("hope")[0]
    records = [{"step": s, "loss": 1.0} for s in (1, 2)]
    series = update_series(records, plan, {"seq_len": 64})  # trained with train.seq_len=64
    assert series["outer"][1] == [0, 1, 2]  # one step each, not 64/256 of one
    assert series["cms_fast"][1] == [0, 2, 4]  # 64 // 32 per sequence and step


@pytest.mark.parametrize("records", [
    [{"step": 0, "heldout_bpb": 8.0}],
    [{"step": 0, "heldout_bpb": 8.0}, {"step": 1, "loss": 5.0, "tokens_per_s": 400.0},
     {"step": 1, "heldout_bpb": 7.0}],
])
def test_a_run_with_one_point_has_no_degenerate_axes(tmp_path: Path, monkeypatch,
                                                     records) -> None:
    pytest.importorskip("matplotlib")
    import warnings

    import matplotlib.pyplot as plt

    from nestgraph.viz.plot import plot_run

    run = fake_run(tmp_path)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    drawn = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: (drawn.append(fig), real_close(fig)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = plot_run(run)
    assert out.read_bytes().startswith(b"\x89PNG")
    for ax in drawn[0].axes:
        low, high = ax.get_xlim()
        assert high - low >= 1, (ax.get_title(), low, high)  # at least a step wide


def test_a_read_only_run_folder_is_an_environment_problem(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    import errno

    from matplotlib.figure import Figure

    def refuse(self, path, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(Figure, "savefig", refuse)
    result = runner.invoke(app, ["plot", str(fake_run(tmp_path))])
    assert result.exit_code == 6 and "permission denied" in result.output
