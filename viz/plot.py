"""Training curves of a run, from its metrics.jsonl (``nestgraph plot``; matplotlib, optional).

Four panels: the training loss and the held-out bits per byte against steps (tokens on the top
axis), tokens per second, and how many updates each level has made. The update counts are
the ones the training loop recorded at every step (``updates/LEVEL`` in metrics.jsonl: what
happened, whatever overrides the run was trained with); for runs recorded before those
entries existed they are computed from the plan's periods and the run's own ``seq_len`` in
run.json (a level every `p` tokens makes ``seq_len // p`` updates per sequence and step, a
stream-lifetime one ``step · seq_len // p`` in all; a level every `n` steps, ``step // n``).
"""

from __future__ import annotations

import json
from pathlib import Path

from nestgraph.errors import EnvironmentProblem, UsageProblem
from nestgraph.fsutil import environment_errors

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
    from nestgraph.runtime.train.runs import read_metrics

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
    _updates(updates_ax, run, records, settings)
    for ax in (loss_ax, bpb_ax, speed_ax, updates_ax):
        _widen(ax)
    fig.suptitle(f"{run.parent.name} / {run.name}")
    return save_figure(plt, fig, out or run / "curves.png")


def save_figure(plt, fig, out: Path) -> Path:
    """Write `fig` to `out` (a full disk is the machine's problem: exit 6), then free it."""
    try:
        with environment_errors(out):
            fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out


def _settings(run: Path) -> dict:
    path = run / "run.json"
    return json.loads(path.read_text())["train"] if path.is_file() else {}


def update_series(records: list[dict], plan: dict | None,
                  settings: dict) -> dict[str, tuple[list[int], list[int]]]:
    """Per level: the steps and the number of updates made by each (per sequence lane)."""
    recorded = sorted({k[len("updates/"):] for r in records for k in r if k.startswith("updates/")})
    if recorded:
        series = {}
        rows = [r for r in records if "loss" in r and "step" in r]
        for name in recorded:
            steps, counts, total = [0], [0], 0
            for r in rows:
                total += int(r.get(f"updates/{name}", 0))
                steps.append(r["step"])
                counts.append(total)
            series[name] = (steps, counts)
        return series
    if plan is None:
        return {}
    last = max([r["step"] for r in records if "step" in r] or [0])
    seq_len = settings.get("seq_len") or plan["train"]["seq_len"]
    steps = list(range(last + 1))
    series = {}
    for level in plan["levels"]:
        if level.get("unit") == "step":
            counts = [s // level["period"] for s in steps]
        elif level.get("lifetime") == "stream":
            counts = [s * seq_len // level["period"] for s in steps]
        else:
            counts = [s * (seq_len // level["period"]) for s in steps]
        series[level["name"]] = (steps, counts)
    return series


def _updates(ax, run: Path, records: list[dict], settings: dict) -> None:
    plan_path = run / "plan.json"
    plan = json.loads(plan_path.read_text()) if plan_path.is_file() else None
    series = update_series(records, plan, settings)
    ax.set(title="updates per level (per sequence)", xlabel="step")
    if not series or max(len(s) for s, _ in series.values()) < 2:
        ax.text(0.5, 0.5, "no updates recorded yet", ha="center", transform=ax.transAxes)
        return
    every = {lv["name"]: lv["every"] for lv in (plan or {}).get("levels", [])}
    styles = ("-", "--", ":", "-.")  # levels with equal periods draw the same line: tell them apart
    for i, (name, (steps, counts)) in enumerate(series.items()):
        label = f"{name} (every {every[name]})" if name in every else name
        ax.step(steps, counts, where="post", linestyle=styles[i % len(styles)], label=label)
    ax.set_yscale("symlog")
    ax.legend(fontsize=7, loc="upper left")


def _widen(ax) -> None:
    """A run with one point would give a zero-width axis: give it a step either side."""
    low, high = ax.get_xlim()
    if high - low < 1:
        start = max(0.0, (low + high) / 2 - 1)  # steps start at 0
        ax.set_xlim(start, start + 2)
