"""The schedule view: which level fires when, over one hyperperiod (the least common multiple
of the periods), as two aligned timelines a person reads at a glance.

* **one step**: the tokens of one training sequence, one cell per `g` tokens (the greatest
  common divisor of the in-step periods); a level that updates every `p` tokens is marked at
  the end of each of its `p`-token chunks.
* **one hyperperiod**: the steps until every level has fired, one cell per step (or per common
  divisor of the slower periods); a level that updates every `P` tokens is marked every
  `P / seq_len` steps.

A level with a period up to one step appears in the first, one of a step or more in the second
(a level of exactly one step in both). Each row has exactly as many marks as its period implies,
and says how many. A timeline longer than `MAX_CELLS` cells (a level every 10^12 tokens) is
drawn for its first `MAX_CELLS` cells only, and says so: the counts stay those of the whole.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from nestgraph.viz.diagram import escape, level_colors

# The most cells a timeline is drawn with (each cell is a table cell in DOT, marks are tasks in
# Mermaid); past it the drawing shows the first cells and says how many there are.
MAX_CELLS = 1024


@dataclass
class Row:
    level: str
    every: str
    fires: list[int]  # indices of the cells drawn where the level fires
    count: int = -1  # how often it fires over the whole timeline (-1: len(fires))

    def __post_init__(self) -> None:
        if self.count < 0:
            self.count = len(self.fires)


@dataclass
class Panel:
    title: str
    cell: str  # what one cell stands for, e.g. "8 tokens"
    columns: int
    rows: list[Row] = field(default_factory=list)
    first: int = 0  # the label of the first cell: token offset 0, or step 1
    stride: int = 1  # label units per cell
    total: int = 0  # cells in the whole timeline; more than `columns` when capped

    @property
    def capped(self) -> bool:
        return self.total > self.columns


@dataclass
class Schedule:
    name: str
    seq_len: int
    hyperperiod_tokens: int
    panels: list[Panel]


def _unit(count: int, unit: str) -> str:
    return f"{count} {unit}{'s' if count != 1 else ''}"


def _panel(title: str, cell: str, total: int, first: int, stride: int) -> Panel:
    return Panel(title, cell, min(total, MAX_CELLS), first=first, stride=stride, total=total)


def _row(panel: Panel, level: dict, period: int) -> Row:
    """A level firing every `period` cells: its marks among the cells drawn, its whole count."""
    return Row(level["name"], level["every"], list(range(period - 1, panel.columns, period)),
               panel.total // period)


def schedule(plan: dict) -> Schedule:
    seq_len = plan["train"]["seq_len"]
    tokens = {lv["name"]: lv["tokens"] for lv in plan["levels"]}
    hyper = math.lcm(*tokens.values(), seq_len)
    within = [lv for lv in plan["levels"] if tokens[lv["name"]] <= seq_len]
    beyond = [lv for lv in plan["levels"] if tokens[lv["name"]] >= seq_len]
    panels = []
    if within:
        g = math.gcd(*(tokens[lv["name"]] for lv in within))
        panel = _panel(f"one step: {_unit(seq_len, 'token')}", _unit(g, "token"), seq_len // g,
                       first=0, stride=g)
        for lv in within:
            panel.rows.append(_row(panel, lv, tokens[lv["name"]] // g))
        panels.append(panel)
    if beyond:
        steps = [tokens[lv["name"]] / seq_len for lv in beyond]
        whole = all(s == int(s) for s in steps)
        g = math.gcd(*(int(s) for s in steps)) if whole else 1
        size = g * seq_len if whole else math.gcd(*(tokens[lv["name"]] for lv in beyond))
        columns = hyper // size
        cell = _unit(g, "step") if whole else _unit(size, "token")
        panel = _panel(f"one hyperperiod: {_unit(hyper // seq_len, 'step')} "
                       f"({_unit(hyper, 'token')})", cell, columns, first=1 if whole else 0,
                       stride=g if whole else size)
        for lv in beyond:
            panel.rows.append(_row(panel, lv, tokens[lv["name"]] // size))
        panels.append(panel)
    return Schedule(plan["name"], seq_len, hyper, panels)


def as_json(s: Schedule) -> dict:
    data = asdict(s)
    for panel, shown in zip(s.panels, data["panels"], strict=True):
        shown["capped"] = panel.capped
    return {"view": "schedule", **data}


def _capped_note(panel: Panel) -> str:
    return (f"the first {panel.columns:,} of {panel.total:,} cells shown" if panel.capped
            else "")


# ------------------------------------------------------------------------------------- DOT


def _header(panel: Panel) -> str:
    """Cells grouped under labels (token offsets, or step numbers), about 16 across."""
    columns, span = panel.columns, 1
    while columns // span > 16:
        span *= 2
    cells = [f'<td colspan="{min(span, columns - i)}" align="left"><font point-size="8">'
             f"{panel.first + i * panel.stride}</font></td>" for i in range(0, columns, span)]
    return '<tr><td></td><td></td>' + "".join(cells) + "</tr>"


def _table(panel: Panel, colors: dict[str, tuple[str, str]]) -> str:
    note = f" · {_capped_note(panel)}" if panel.capped else ""
    rows = [f'<tr><td colspan="{panel.columns + 2}" align="left"><b>{escape(panel.title)}'
            f"</b> · one cell = {escape(panel.cell)}{note}</td></tr>", _header(panel)]
    for row in panel.rows:
        light, strong = colors[row.level]
        fires = set(row.fires)
        cells = "".join(f'<td bgcolor="{strong}" width="8" height="14"></td>' if i in fires
                        else '<td width="8" height="14"></td>' for i in range(panel.columns))
        rows.append(f'<tr><td bgcolor="{light}" align="left"><b>{escape(row.level)}</b></td>'
                    f'<td align="left">{escape(row.every)} · {row.count:,}×</td>{cells}</tr>')
    return ('<table border="0" cellborder="1" cellspacing="0" cellpadding="2" color="#bbbbbb">'
            + "".join(rows) + "</table>")


def to_dot(s: Schedule, plan: dict, direction: str = "TB") -> str:
    colors = level_colors(plan)
    title = (f"<b>{escape(s.name)}</b>: update schedule over one hyperperiod "
             f"({_unit(s.hyperperiod_tokens, 'token')}, sequences of {s.seq_len})")
    lines = ['digraph "schedule" {',
             f'  graph [rankdir={direction}, label=<{title}>, labelloc=t, fontname="Helvetica",'
             ' fontsize=11];',
             '  node [shape=plaintext, fontname="Helvetica", fontsize=9];']
    for i, panel in enumerate(s.panels):
        lines.append(f'  "panel{i}" [label=<{_table(panel, colors)}>];')
    for i in range(len(s.panels) - 1):
        lines.append(f'  "panel{i}" -> "panel{i + 1}" [style=invis];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(s: Schedule) -> str:
    """A Mermaid gantt chart: a section per panel, a task per firing."""
    lines = ["gantt", f"    title {s.name}: update schedule", "    dateFormat X",
             "    axisFormat %s"]
    for panel in s.panels:
        note = f", {_capped_note(panel)}" if panel.capped else ""
        lines.append(f"    section {panel.title} (cell = {panel.cell}{note})")
        for row in panel.rows:
            for i in row.fires:
                lines.append(f"    {row.level} : {i}, {i + 1}")
    return "\n".join(lines) + "\n"
