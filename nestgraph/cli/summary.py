"""The level table `nestgraph compile` prints: rich on a terminal, plain text in a pipe."""

from __future__ import annotations

import sys
from pathlib import Path

from nestgraph.console import status
from nestgraph.escape import printable

_COLUMNS = ("level", "every", "lifetime", "context", "rule", "params", "FLOPs/tok", "opt. state")


_NUMERIC = frozenset({"params", "FLOPs/tok", "opt. state"})


def summary_rows(plan: dict) -> list[tuple[str, ...]]:
    """The level table's rows, every user string made safe to print."""
    return [tuple(printable(str(cell)) for cell in (
        lv["name"], lv["every"], lv["lifetime"], lv["context"], lv["rule"]["type"],
        f"{lv['params']:,}", f"{lv['flops_per_token']:,}",
        _size(4 * lv.get("optimizer_state", 0))))
        for lv in plan["levels"]]


def plain_table(rows: list[tuple[str, ...]], columns: tuple[str, ...] = _COLUMNS) -> str:
    """A table as plain text, each column as wide as its widest cell: nothing is cut."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]

    def line(cells) -> str:
        out = [cell.rjust(w) if col in _NUMERIC else cell.ljust(w)
               for cell, w, col in zip(cells, widths, columns, strict=True)]
        return "  ".join(out).rstrip()

    return "\n".join([line(columns), *(line(r) for r in rows)]) + "\n"


def summary_notes(plan: dict) -> list[str]:
    """The lines under the table: what each level owns, the totals, the chunk size."""
    lines = []
    for lv in plan["levels"]:
        owns = ", ".join(lv["owns"]) or "nothing"
        init = (f"; initial state of {', '.join(lv['initial_states'])}"
                if lv["initial_states"] else "")
        lines.append(printable(f"  {lv['name']} owns {owns}{init}"))
    state = sum(lv.get("optimizer_state", 0) for lv in plan["levels"])
    lines.append(f"total: {plan['totals']['params']:,} weights, "
                 f"{plan['totals']['flops_per_token']:,} forward FLOPs/token, "
                 f"optimizer state {_size(4 * state)} (fp32)")
    if any(lv["kind"] == "in_context" for lv in plan["levels"]):
        lines.append(f"next-token levels read the sequence in chunks of {plan['chunk']} tokens")
    return lines


def print_summary(plan: dict, folder: Path, stream=None) -> None:
    """The level table and its notes on `stream` (stdout); where the build went on stderr.

    On a terminal the table is drawn by rich; in a pipe or a log it is plain text whose columns
    are as wide as their cells, so no number is ever cut.
    """
    stream = stream if stream is not None else sys.stdout
    title = printable(f"{plan['name']}: levels, fastest (innermost) first")
    rows = summary_rows(plan)
    if not (getattr(stream, "isatty", lambda: False)() and _rich_table(stream, title, rows,
                                                                       summary_notes(plan))):
        stream.write(f"{title}\n{plain_table(rows)}")
        stream.write("".join(line + "\n" for line in summary_notes(plan)))
        stream.flush()
    shown = printable(str(folder))
    status(f"wrote {shown}/program.py, plan.json, spec.resolved.yaml")
    status(f"train it: nestgraph train {shown}")


def _rich_table(stream, title: str, rows, notes: list[str]) -> bool:
    """Draw the table with rich on a terminal wide enough for every cell; False if it is not."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), title_justify="left")
    for col in _COLUMNS:
        table.add_column(col, justify="right" if col in _NUMERIC else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console = Console(file=stream)
    unbounded = console.options.update(max_width=1 << 20)
    if console.measure(table, options=unbounded).maximum > console.width:
        return False  # rich would cut cells to fit: the plain table widens instead
    console.print(table)
    for line in notes:
        console.print(Text(line))
    return True


def _size(nbytes: int) -> str:
    if nbytes == 0:
        return "-"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"
