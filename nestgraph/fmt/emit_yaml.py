"""A spec's plain data written as YAML, canonically (``nestgraph fmt``).

Top-level sections in the order of the schema, blank lines between them; a level's keys in
the order of the schema; ``type`` first in a module, objective or rule. A mapping or list whose
values are all plain scalars is written inline (``{type: gd, lr: 0.01}``, ``[attn, mlp]``)
when it fits and nothing in it carries a comment; everything else is written as blocks.
Strings are left unquoted only where this project's YAML reader reads them back as the same
string (``'1e-3'`` and ``'no'`` stay quoted).
"""

from __future__ import annotations

import math
from typing import Any

from nestgraph.fmt.emit import BLANK, WIDTH, Line, number, quoted, render
from nestgraph.spec.comments import Attached
from nestgraph.spec.source import SpecPath
from nestgraph.spec.yaml_scalars import reads_as_string

TOP = ("nestgraph", "name", "about", "model", "modules", "levels", "train", "data")
LEVEL = ("name", "owns", "every", "context", "objective", "rule", "lifetime", "meta")
_INDICATORS = set("-?:,[]{}#&*!|>'\"%@`")
_FLOW_SPECIALS = set(",[]{}")
def _plain_ok(text: str, flow: bool) -> bool:
    """Whether `text` can be written without quotes and read back as the same string."""
    return bool(
        text
        and text == text.strip()
        and text.isprintable()
        and text[0] not in _INDICATORS
        and ": " not in text
        and " #" not in text
        and not text.endswith(":")
        and text != "<<"  # a merge key, unquoted
        and not (flow and _FLOW_SPECIALS & set(text))
        and reads_as_string(text)
    )


def scalar(value: Any, path: SpecPath, flow: bool = False) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
    if isinstance(value, (int, float)):
        return number(value, path)
    text = str(value)
    if _plain_ok(text, flow):
        return text
    return quoted(text)


def _ordered(value: dict[str, Any], path: SpecPath) -> list[str]:
    first: tuple[str, ...] = ("type",)
    if path == ():
        first = TOP
    elif len(path) == 2 and path[0] == "levels":
        first = LEVEL
    return [k for k in first if k in value] + [k for k in value if k not in first]


def _flat(value: Any) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return all(not isinstance(v, (dict, list)) for v in items)


class _Writer:
    def __init__(self, notes: Attached) -> None:
        self.notes = notes

    def flow(self, value: Any, path: SpecPath) -> str:
        if isinstance(value, dict):
            keys = _ordered(value, path)
            inner = (f"{scalar(k, path, True)}: {scalar(value[k], (*path, k), True)}"
                     for k in keys)
            return "{" + ", ".join(inner) + "}"
        return "[" + ", ".join(scalar(v, (*path, i), True) for i, v in enumerate(value)) + "]"

    def entry(self, lead: str, value: Any, path: SpecPath, indent: int) -> list[Line]:
        """`lead` (``key:`` or ``-``) and the value: inline when it may be, else a block."""
        if not isinstance(value, (dict, list)):
            return [Line(indent, f"{lead} {scalar(value, path)}", [path])]
        if not value:
            return [Line(indent, f"{lead} {'{}' if isinstance(value, dict) else '[]'}", [path])]
        if _flat(value) and not self.notes.inside(path):
            line = Line(indent, f"{lead} {self.flow(value, path)}", [path])
            if line.width() <= WIDTH:
                return [line]
        if lead == "-":
            # A block inside a list item: its first line shares the dash's line.
            body = self.block(value, path, indent + 2)
            body[0] = Line(indent, "- " + body[0].text, [path, *body[0].paths])
            return body
        return [Line(indent, lead, [path]), *self.block(value, path, indent + 2)]

    def block(self, value: Any, path: SpecPath, indent: int) -> list[Line]:
        lines: list[Line] = []
        if isinstance(value, dict):
            for k in _ordered(value, path):
                lines += self.entry(f"{scalar(k, path)}:", value[k], (*path, k), indent)
        else:
            for i, item in enumerate(value):
                lines += self.entry("-", item, (*path, i), indent)
        return lines

    def document(self, data: dict[str, Any]) -> list[Line | None]:
        lines: list[Line | None] = []
        previous_scalar = False
        for k in _ordered(data, ()):
            is_scalar = not isinstance(data[k], (dict, list))
            if lines and not (is_scalar and previous_scalar):
                lines.append(BLANK)
            lines += self.entry(f"{scalar(k, ())}:", data[k], (k,), 0)
            previous_scalar = is_scalar
        return lines


def to_yaml(data: dict[str, Any], notes: Attached) -> str:
    """The spec as canonical YAML text, comments included."""
    return render(_Writer(notes).document(data), notes)
