"""Command-line overrides of a spec's values: ``train.steps=20``, ``~levels.0.meta``.

An override is ``path=value``: the path is dotted keys, where an entry of a list is named by its
index or, for entries that have a ``name`` (levels), by that name; the value is read as YAML
with the same safe rules as a spec file. ``~path`` deletes a key. Setting a key the spec does
not have adds it (so defaults can be changed), but a path through a mapping that neither the
spec nor the schema has is a mistake, reported with the keys that do exist.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, get_origin

from pydantic import BaseModel

from nestgraph.errors import Diagnostic, SpecError
from nestgraph.spec.schema_walk import type_at
from nestgraph.spec.source import OVERRIDE_SEGMENT, SourceFile, SpecPath
from nestgraph.spec.validation import describe, did_you_mean, subject, where
from nestgraph.spec.yaml_front import load_value
from nestgraph.spec.yaml_scalars import kind_of

CODE = "E-OVERRIDE"


class _Problem(Exception):
    """One override that cannot be applied; becomes a diagnostic naming the override."""

    def __init__(self, message: str, hint: str = "", notes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.notes = notes


@dataclass(frozen=True)
class _Override:
    keys: tuple[str, ...]
    delete: bool
    value: Any = None


def _parse(text: str) -> _Override:
    delete = text.startswith("~")
    if delete:
        if "=" in text:
            raise _Problem("a deletion takes no value", f"write '{text.split('=', 1)[0]}'")
        path_text, value_text = text[1:], ""
    elif "=" not in text:
        raise _Problem(
            "an override is written path=value",
            "e.g. train.steps=20, levels.outer.rule.lr=3e-4; ~path deletes a key",
        )
    else:
        path_text, value_text = text.split("=", 1)
    keys = tuple(path_text.strip().split("."))
    if not all(keys):
        raise _Problem(
            f"'{path_text}' is not a path: write keys separated by dots, e.g. train.steps"
        )
    if delete:
        return _Override(keys, delete=True)
    return _Override(keys, delete=False, value=_read_value(path_text, value_text))


def _read_value(path_text: str, value_text: str) -> Any:
    if not value_text.strip():
        raise _Problem(
            "no value after '='",
            f"write ~{path_text.strip()} to delete the key, or {path_text.strip()}='' for an "
            "empty string",
        )
    try:
        return load_value(value_text)
    except SpecError as err:
        first = err.diagnostics[0]
        message = f"cannot read the value '{value_text}': {first.message}"
        raise _Problem(message, first.hint) from None


# ------------------------------------------------------------------------------- walking


def _list_index(items: list[Any], key: str, path: SpecPath, data: Any) -> int:
    """The index a path segment names in a list: a number, or the `name` of an entry."""
    if key.isdigit():
        # A number too long to be an index is no entry (and would be too long to convert).
        index = int(key) if len(key) <= 18 else len(items)
        if index >= len(items):
            raise _Problem(
                f"{describe(path, data)} has {len(items)} entries: there is no entry {index}",
                notes=(f"entries are numbered from 0 to {len(items) - 1}",) if items else (),
            )
        return index
    names = [item.get("name") for item in items if isinstance(item, dict)]
    names = [name for name in names if isinstance(name, str)]
    if key in names:
        return names.index(key)
    noun = "level" if path == ("levels",) else "entry"
    raise _Problem(
        f"no {noun} named '{key}' in {describe(path, data)}",
        did_you_mean(key, names),
        (f"the names are: {', '.join(names)} (or use an index)",) if names else (),
    )


def _can_create(path: SpecPath, data: Any) -> bool:
    """Whether the schema has a mapping at `path`, so an override may start it afresh."""
    tp = type_at(path, data)
    return (isinstance(tp, type) and issubclass(tp, BaseModel)) or get_origin(tp) is dict


def _unknown_key(key: str, container: dict[str, Any], path: SpecPath, data: Any,
                 create: bool) -> _Problem:
    known = list(container)
    if create:
        # Keys the schema allows are candidates too: an override may set a default.
        model = type_at(path, data)
        known += [f for f in getattr(model, "model_fields", {}) if f not in container]
    return _Problem(
        f"there is no key '{key}' {where(path, data)}",
        did_you_mean(key, known),
        (f"keys there: {', '.join(known)}",) if known else (),
    )


def _step(container: Any, key: str, path: SpecPath, data: Any, create: bool) -> str | int:
    """The document segment `key` names inside `container` (at `path`).

    With `create`, a missing key that the schema says holds a mapping is added empty.
    """
    if isinstance(container, list):
        return _list_index(container, key, path, data)
    if not isinstance(container, dict):
        raise _Problem(f"{subject(path, data)} is {kind_of(container)}, so it has no key '{key}'")
    if key not in container:
        if not (create and _can_create((*path, key), data)):
            raise _unknown_key(key, container, path, data, create)
        container[key] = {}
    return key


def _walk(data: dict[str, Any], keys: tuple[str, ...], create: bool) -> tuple[Any, SpecPath]:
    """The container that holds the last key, and its path in the document."""
    container: Any = data
    path: SpecPath = ()
    for key in keys:
        segment = _step(container, key, path, data, create)
        container = container[segment]
        path = (*path, segment)
    return container, path


# ------------------------------------------------------------------------------ applying


def _shift_spans(source: SourceFile, list_path: SpecPath, removed: int) -> None:
    """Renumber the source map of a list's later entries after one entry is deleted."""
    depth = len(list_path)
    tables: tuple[dict[SpecPath, Any], ...] = (source.keys, source.values, source.overrides)
    for table in tables:
        moved: dict[SpecPath, Any] = {}
        for path in list(table):
            if path[:depth] != list_path or len(path) <= depth:
                continue
            index = path[depth]
            if isinstance(index, int) and index >= removed:
                span = table.pop(path)
                if index > removed:
                    moved[(*list_path, index - 1, *path[depth + 1 :])] = span
        table.update(moved)


def _apply(data: dict[str, Any], source: SourceFile, override: _Override) -> SpecPath | None:
    """Apply one override; the path it changed, or None when it removed a list entry."""
    container, parent = _walk(data, override.keys[:-1], create=not override.delete)
    last = override.keys[-1]
    if override.delete:
        segment = _step(container, last, parent, data, create=False)
        del container[segment]
        if isinstance(container, list):
            # Later entries move up; errors about the list as a whole stay with the file.
            _shift_spans(source, parent, int(segment))
            return None
        return (*parent, segment)
    if isinstance(container, list):
        segment = _list_index(container, last, parent, data)
    elif isinstance(container, dict):
        segment = last
    else:
        raise _Problem(
            f"{subject(parent, data)} is {kind_of(container)}, so it has no key '{last}'"
        )
    container[segment] = override.value
    return (*parent, segment)


def apply_overrides(
    data: dict[str, Any], source: SourceFile, overrides: list[str]
) -> dict[str, Any]:
    """`data` with the overrides applied, in order; `data` itself is left as it was.

    Records each changed path in ``source.overrides`` so that later errors about those values
    name the override. Every override that cannot be applied is reported, in one `SpecError`.
    """
    result = copy.deepcopy(data)
    errors: list[Diagnostic] = []
    for number, text in enumerate(overrides, start=1):
        try:
            changed = _apply(result, source, _parse(text))
        except _Problem as problem:
            path = (OVERRIDE_SEGMENT, number)
            source.overrides[path] = (number, text)
            errors.append(
                Diagnostic(problem.message, path, hint=problem.hint, code=CODE, notes=problem.notes)
            )
            continue
        if changed is not None:
            source.overrides[changed] = (number, text)
    if errors:
        raise SpecError(errors, source)
    return result
