"""Figures of `nestgraph eval` results (``RUN/eval/TASK.png``; matplotlib, optional).

continual: the forgetting curves (each domain's held-out loss after every phase); recall and
copy: accuracy by length; levels: each ablation's change of held-out loss beside the
per-position loss with in-context learning on and off.
"""

from __future__ import annotations

import json
from pathlib import Path

from nestgraph.viz.plot import _pyplot, save_figure


def plot_eval(run: Path, task: str, doc: dict, out: Path | None = None) -> Path:
    """Draw one task's result to `out` (default ``RUN/eval/TASK.png``)."""
    plt = _pyplot()
    results = doc["results"]
    if task == "levels":
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
        _levels(left, right, results)
    else:
        fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
        {"continual": _continual, "recall": _accuracy, "copy": _accuracy}[task](ax, results)
    fig.suptitle(f"{doc.get('spec', '')} at step {doc.get('checkpoint_step', '?')}: {task}")
    return save_figure(plt, fig, out or run / "eval" / f"{task}.png")


def plot_evals(run: Path) -> list[Path]:
    """Draw every result found in ``RUN/eval/`` (a damaged file is skipped, not fatal)."""
    drawn = []
    for path in sorted((run / "eval").glob("*.json")) if (run / "eval").is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            task = doc["task"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if task in ("continual", "recall", "copy", "levels"):
            drawn.append(plot_eval(run, task, doc))
    return drawn


def _continual(ax, results: dict) -> None:
    names = results["domains"]
    phases = list(range(len(names) + 1))
    for j, name in enumerate(names):
        curve = [results["before"][j], *(row[j] for row in results["matrix"])]
        ax.plot(phases, curve, marker="o", label=name)
    for i in range(1, len(names) + 1, 2):
        ax.axvspan(i - 0.5, i + 0.5, color="0.93", zorder=0)
    ax.set_xticks(phases, ["start", *(f"{i + 1}: {n}" for i, n in enumerate(names))],
                  rotation=20, fontsize=7)
    ax.set(title=f"forgetting curves (BWT {results['bwt']:+.3f}, forgetting "
                 f"{results['forgetting']:.3f})", xlabel="after phase",
           ylabel=f"held-out {results['units']}")
    ax.legend(fontsize=7)


def _accuracy(ax, results: dict) -> None:
    key = "probe" if results["rows"] and "probe" in results["rows"][0] else "language"
    size = "multiple" if key == "probe" else "n"
    for name in dict.fromkeys(r[key] for r in results["rows"]):
        rows = [r for r in results["rows"] if r[key] == name and r["accuracy"] is not None]
        line, = ax.plot([r[size] for r in rows], [r["accuracy"] for r in rows], marker="o",
                        label=name)
        cold = [r for r in rows if "accuracy_without_carry" in r]
        if cold:  # the same examples with every window read afresh
            ax.plot([r[size] for r in cold], [r["accuracy_without_carry"] for r in cold],
                    ls="--", marker="x", color=line.get_color(), label=f"{name}, not carried")
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.05, 1.05)
    ax.set(title="exact-match accuracy", ylabel="accuracy",
           xlabel="context length (x train.seq_len)" if key == "probe" else "n")
    ax.legend(fontsize=7)


def _levels(left, right, results: dict) -> None:
    rows = [r for r in results["rows"] if r["ablation"] != "none"]
    labels = [f"{r['ablation']} {r['level']}" for r in rows]
    colours = ["0.6" if r["flagged"] else "C0" for r in rows]
    left.barh(range(len(rows)), [r["delta"] for r in rows], color=colours)
    left.set_yticks(range(len(rows)), labels, fontsize=7)
    left.invert_yaxis()
    left.axvline(0, color="k", lw=0.8)
    left.set(title="change of held-out bpb (grey: flagged)", xlabel="bits per byte")
    if not rows:
        left.text(0.5, 0.5, "no level learns in context", ha="center", transform=left.transAxes)
    for name, curve in results["position_bpb"].items():
        right.plot(range(1, len(curve) + 1), curve, lw=1,
                   label=f"in-context learning {name}")
    right.set(title="loss by position (mean over held-out windows)", xlabel="position",
              ylabel="bits per byte")
    right.legend(fontsize=7)
