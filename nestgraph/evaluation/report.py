"""A task's result as ``RUN/eval/TASK.json`` and as a table on the terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nestgraph import __version__
from nestgraph.escape import printable


def document(task: str, loaded, settings: dict, results: dict, seconds: float) -> dict:
    return {"task": task, "version": __version__, "spec": loaded.program.name,
            "checkpoint_step": loaded.step, "settings": settings, "results": results,
            "seconds": round(seconds, 3)}


def write(run: Path, task: str, doc: dict) -> Path:
    from nestgraph.compiler.buildfolder import cannot_write
    from nestgraph.fsutil import atomic_write_text

    path = run / "eval" / f"{task}.json"
    try:
        path.parent.mkdir(exist_ok=True)
        atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    except OSError as err:
        raise cannot_write(path, err) from None
    return path


def _f(value: float) -> str:
    return f"{value:.4f}"


def table(task: str, results: dict) -> tuple[tuple[str, ...], list[tuple[str, ...]], list[str]]:
    """Columns, rows and notes of a task's table."""
    if task == "continual":
        names = results["domains"]
        columns = ("after", *names)
        rows = [("start", *map(_f, results["before"]))]
        rows += [(f"phase {i + 1}: {names[i]}", *map(_f, row))
                 for i, row in enumerate(results["matrix"])]
        notes = [f"held-out {results['units']} of each domain (lower is better)",
                 f"average final {_f(results['average_final'])}  BWT {_f(results['bwt'])}  "
                 f"forgetting {_f(results['forgetting'])}  FWT {_f(results['fwt'])}"]
        return columns, rows, notes
    if task == "levels":
        columns = ("ablation", "level", "kind", "lifetime", "bpb", "change", "flag")
        rows = [(r["ablation"], r["level"], r["kind"], r["lifetime"], _f(r["bpb"]),
                 f"{r['delta']:+.4f}",
                 "changes nothing" if r["flagged"] and r["ablation"] != "none" else "")
                for r in results["rows"]]
        return columns, rows, [f"flagged: |change| < {results['threshold']:g} bits per byte"]
    key, label = ("probe", "probe") if task == "recall" else ("language", "language")
    size = ("multiple", "x seq_len") if task == "recall" else ("n", "n")
    columns = (label, size[1], "bytes", "accuracy", "correct", "carried", "not carried")
    rows = [(r[key], f"{r[size[0]]:g}", str(r.get("length", r.get("bytes"))),
             "too short" if r["accuracy"] is None else f"{r['accuracy']:.3f}",
             f"{r['correct']}/{r['answers']}",
             "yes" if r["carry"] else "no",
             f"{r['accuracy_without_carry']:.3f}" if "accuracy_without_carry" in r else "")
            for r in results["rows"]]
    notes = ["exact match of every answer byte, teacher-forced greedy"]
    if results.get("finetuned_steps"):
        notes.append(f"after {results['finetuned_steps']} fine-tuning steps on the format")
    return columns, rows, notes


def show(task: str, results: dict, stream=None) -> None:
    """The task's table: rich on a terminal, plain text in a pipe (as the level table is)."""
    stream = stream if stream is not None else sys.stdout
    columns, rows, notes = table(task, results)
    rows = [tuple(printable(str(c)) for c in row) for row in rows]
    if getattr(stream, "isatty", lambda: False)() and _rich(stream, task, columns, rows, notes):
        return
    stream.write(f"eval: {task}\n")
    stream.write(_plain(columns, rows))
    stream.write("".join(line + "\n" for line in notes))
    stream.flush()


def _plain(columns, rows) -> str:
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
             for cells in [columns, *rows]]
    return "\n".join(lines) + "\n"


def _rich(stream, task: str, columns, rows, notes: list[str]) -> bool:
    """A rich table on a terminal wide enough for every cell; False (plain text) if not."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text(f"eval: {task}"), title_justify="left")
    for c in columns:
        t.add_column(c, no_wrap=True)
    for row in rows:
        t.add_row(*(Text(cell) for cell in row))
    console = Console(file=stream, highlight=False)
    if console.measure(t, options=console.options.update(max_width=1 << 20)).maximum \
            > console.width:
        return False  # rich would cut cells: the plain table widens instead
    console.print(t)
    for line in notes:
        console.print(Text(line))
    return True
