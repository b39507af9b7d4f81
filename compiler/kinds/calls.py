"""A `Call` two ways: written as source for program.py, or called to build the module.

The code generator and the shapes pass read the same `Call`, so the network the compiler
measures is the network the program builds. Source puts one argument per line (a call whose
arguments are all plain literals given by position stays on one line: ``L.make_norm('rms', 64)``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from nestgraph.compiler.kinds.base import Call

INDENT = "    "


def source(value: Any, literal: Callable[[Any, str], str], where: str, depth: int = 0) -> str:
    """Python source for a `Call` or plain data; `literal` writes (and checks) each leaf."""
    if isinstance(value, Call):
        return _call_source(value, literal, where, depth)
    if isinstance(value, dict) and any(isinstance(v, Call) for v in value.values()):
        pad = INDENT * (depth + 1)
        items = [f"{pad}{k!r}: {source(v, literal, f'{where}.{k}', depth + 1)},"
                 for k, v in value.items()]
        return "{\n" + "\n".join(items) + "\n" + INDENT * depth + "}"
    return literal(value, where)


def _call_source(c: Call, literal, where: str, depth: int) -> str:
    if not c.kwargs and not any(isinstance(a, Call | dict) for a in c.args):
        return f"{c.ctor}({', '.join(literal(a, where) for a in c.args)})"
    pad = INDENT * (depth + 1)
    lines = [f"{pad}{source(a, literal, where, depth + 1)}," for a in c.args]
    lines += [f"{pad}{k}={source(v, literal, f'{where}.{k}', depth + 1)},"
              for k, v in c.kwargs]
    return f"{c.ctor}(\n" + "\n".join(lines) + "\n" + INDENT * depth + ")"


def build(value: Any, aliases: dict[str, str]) -> Any:
    """Call a `Call` (and the calls inside it); `aliases` maps ALIAS to its module path."""
    if isinstance(value, Call):
        alias, _, name = value.ctor.partition(".")
        ctor = getattr(importlib.import_module(aliases[alias]), name)
        return ctor(*(build(a, aliases) for a in value.args),
                    **{k: build(v, aliases) for k, v in value.kwargs})
    if isinstance(value, dict):
        return {k: build(v, aliases) for k, v in value.items()}
    if isinstance(value, list):
        return [build(v, aliases) for v in value]
    return value
