"""Salvage a spec the schema rejected, so the graph checks can still run on the rest.

Users want every problem at once (the most common complaint about config tools is "one error
per run"). When some entries fail the schema, we drop exactly those (an unknown key, a whole
level or module whose values are wrong) and validate what is left; the graph passes then run on
that, staying quiet about names that pointed at the dropped entries (`Lost`).
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ValidationError

from nestgraph.compiler.passes.common import Lost
from nestgraph.spec.schema import Spec

_MAX_ROUNDS = 20
_TOP_DEFAULTS = {"nestgraph": 1, "name": "spec", "about": ""}


def salvage(data: Any) -> tuple[Spec | None, list[int], Lost]:
    """The largest valid spec we can make by dropping rejected entries, with level positions."""
    gone = Lost()
    if not isinstance(data, dict):
        return None, [], gone
    data = copy.deepcopy(data)
    levels = data.get("levels")
    index = list(range(len(levels))) if isinstance(levels, list) else []
    for _ in range(_MAX_ROUNDS):
        try:
            return Spec.model_validate(data), index, gone
        except ValidationError as err:
            changed = False
            # Deepest first, and list items from the back, so one drop never shifts another.
            for e in sorted(err.errors(), key=lambda e: _sort_key(e["loc"]), reverse=True):
                changed |= _repair(data, _doc_path(data, e["loc"]), e["type"], gone, index)
            if not changed:
                break
    return None, index, gone


def _sort_key(loc: tuple) -> tuple:
    return tuple((0, x) if isinstance(x, int) else (1, str(x)) for x in loc)


def _doc_path(data: Any, loc: tuple) -> tuple:
    """Pydantic's loc with the tags of discriminated unions (and validator names) taken out."""
    path, node = [], data
    for key in loc:
        if isinstance(node, dict) and key in node:
            path.append(key)
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            path.append(key)
            node = node[key]
        elif isinstance(node, dict | list):
            if isinstance(node, dict) and isinstance(key, str) and _is_field_name(key):
                path.append(key)  # a missing or extra key
                node = None
            continue
    return tuple(path)


def _is_field_name(key: str) -> bool:
    return "[" not in key and "-" not in key


def _repair(data: dict, path: tuple, kind: str, gone: Lost, index: list[int]) -> bool:
    if not path:
        return False
    head = path[0]
    if head == "levels" and len(path) >= 2 and isinstance(path[1], int):
        return _drop_level(data, path[1], gone, index) if kind != "extra_forbidden" or \
            len(path) == 2 else _delete(data, path)
    if head == "modules" and len(path) >= 2:
        if kind == "extra_forbidden" and len(path) > 2:
            return _delete(data, path)
        gone.modules.add(str(path[1]))
        return data["modules"].pop(path[1], None) is not None
    if head in ("train", "data", "model") and len(path) >= 2:
        if head == "model" and kind == "missing":
            gone.model = True
            return False
        return _delete(data, path[:2])
    if head in _TOP_DEFAULTS and kind != "extra_forbidden":
        data[head] = _TOP_DEFAULTS[head]
        return True
    if len(path) == 1 and kind == "extra_forbidden":
        return _delete(data, path)
    return False


def _drop_level(data: dict, i: int, gone: Lost, index: list[int]) -> bool:
    levels = data["levels"]
    if i >= len(levels):
        return False
    level = levels.pop(i)
    index.pop(i)
    gone.dropped += 1
    if isinstance(level, dict):
        if isinstance(level.get("name"), str):
            gone.levels.add(level["name"])
        owns = level.get("owns")
        gone.owns.update([owns] if isinstance(owns, str) else
                         [o for o in owns or [] if isinstance(o, str)] if isinstance(owns, list)
                         else [])
    return True


def _delete(data: dict, path: tuple) -> bool:
    node = data
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return False
    if isinstance(node, dict) and path[-1] in node:
        del node[path[-1]]
        return True
    return False
