"""Training curves of a run, from its metrics.jsonl (``nestgraph plot``; matplotlib, optional).

Four panels: the training loss and the held-out bits per byte against steps (tokens on the top
axis), tokens per second, and how many updates each level has made, counted from the
schedule in the run's plan.json (a level every `p` tokens has made ``step · seq_len // p``
updates per sequence by step `step`; a level every `n` steps, ``step // n``).
"""

from __future__ import annotations

import json
from pathlib import Path

from nestgraph.errors import EnvironmentProblem, UsageProblem

INSTALL = "pip install 'nestgraph[plot]' (or: pip install matplotlib)"


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise EnvironmentProblem("cannot plot: matplotlib is not installed", INSTALL) from None
    matplotlib.use("Agg")  # files only: never open a window, work without a display
    import matplotlib.pyplot as plt

    return plt


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    rows = [(r["step"], r[key]) for r in records if key in r and "step" in r]
    return [s for s, _ in rows], [v for _, v in rows]


def plot_run(run: Path, out: Path | None = None) -> Path:
    """Draw the run's curves to `out` (PNG or SVG by suffix; default RUN/curves.png)."""
    from nestgraph.runtime.runs import read_metrics

    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        raise UsageProblem(f"'{run}' is not a run folder: it has no metrics.jsonl",
                           "give a folder under runs/NAME/, e.g. runs/hope/20261202-101500")
    plt = _pyplot()
    records = read_metrics(metrics)
    settings = _settings(run)
    tokens_per_step = settings.get("batch", 1) * settings.get("seq_len", 1)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    (loss_ax, bpb_ax), (speed_ax, updates_ax) = axes
    steps, loss = _series(records, "loss")
    loss_ax.plot(steps, loss, lw=1)
    loss_ax.set(title="training loss (nats per byte)", xlabel="step")
    steps, bpb = _series(records, "heldout_bpb")
    bpb_ax.plot(steps, bpb, marker="o")
    bpb_ax.set(title="held-out bits per byte", xlabel="step")
    for ax in (loss_ax, bpb_ax):
        top = ax.secondary_xaxis("top", functions=(lambda s: s * tokens_per_step,
                                                   lambda t: t / tokens_per_step))
        top.set_xlabel("tokens")
    steps, speed = _series(records, "tokens_per_s")
    speed_ax.plot(steps, speed, lw=1)
    speed_ax.set(title="throughput (tokens per second)", xlabel="step")
    _updates(updates_ax, run, settings, max(steps or [0]))
    fig.suptitle(f"{run.parent.name} / {run.name}")
    out = out or run / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _settings(run: Path) -> dict:
    path = run / "run.json"
    return json.loads(path.read_text())["train"] if path.is_file() else {}


def _updates(ax, run: Path, settings: dict, last: int) -> None:
    plan_path = run / "plan.json"
    ax.set(title="updates per level (from the schedule)", xlabel="step")
    if not plan_path.is_file() or last == 0:
        ax.text(0.5, 0.5, "no plan.json in the run folder", ha="center", transform=ax.transAxes)
        return
    seq_len = settings.get("seq_len") or json.loads(plan_path.read_text())["train"]["seq_len"]
    steps = list(range(last + 1))
    styles = ("-", "--", ":", "-.")  # levels with equal periods draw the same line: tell them apart
    for i, level in enumerate(json.loads(plan_path.read_text())["levels"]):
        ax.step(steps, [s * seq_len // level["tokens"] for s in steps], where="post",
                linestyle=styles[i % len(styles)], label=f"{level['name']} (every {level['every']})")
    ax.set_yscale("symlog")
    ax.legend(fontsize=7, loc="upper left")
