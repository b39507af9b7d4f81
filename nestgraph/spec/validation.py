"""Turning pydantic's validation errors into diagnostics a person can act on.

pydantic reports *its* view of the data: ``loc`` carries the tags of discriminated unions and
names of internal validators (``('levels', 0, 'rule', 'adamw', 'lrr')``), and messages speak of
"inputs" and "extra inputs". Here every error gets a path into the user's document, a message
that names the entry ("unknown key 'lrr' in rule of level 'outer'") and, for misspellings, a
did-you-mean computed from the fields the schema allows at that place.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, get_args, get_origin

from pydantic import ValidationError

from nestgraph.errors import Diagnostic
from nestgraph.spec.schema import Spec
from nestgraph.spec.schema_walk import (
    Located,
    child_data,
    child_type,
    data_at,
    is_model,
    literal_choices,
    locate,
    model_at,
    type_at,
    union_tags,
)
from nestgraph.spec.source import SpecPath
from nestgraph.spec.yaml_scalars import kind_of

CODE = "E-SCHEMA"

_QUOTED = re.compile(r"'([^']*)'")

# ------------------------------------------------------------------------------ wording


def _level_label(data: Any, index: int) -> str:
    level = child_data(child_data(data, "levels"), index)
    name = level.get("name") if isinstance(level, dict) else None
    return f"level '{name}'" if isinstance(name, str) and name else f"levels[{index}]"


def _dotted(path: SpecPath) -> str:
    text = ""
    for segment in path:
        text += f"[{segment}]" if isinstance(segment, int) else f".{segment}" if text else segment
    return text


def describe(path: SpecPath, data: Any) -> str:
    """A noun phrase for the entry at `path`: "level 'outer'", "rule of level 'outer'"."""
    if not path:
        return "the top level"
    if path[0] == "levels" and len(path) >= 2 and isinstance(path[1], int):
        level = _level_label(data, path[1])
        return level if len(path) == 2 else f"{_dotted(path[2:])} of {level}"
    if path[0] == "modules" and len(path) >= 2:
        module = f"module '{path[1]}'"
        if len(path) >= 4 and path[2] == "blocks":
            block = f"block '{path[3]}' of {module}"
            return block if len(path) == 4 else f"{_dotted(path[4:])} of {block}"
        return module if len(path) == 2 else f"{_dotted(path[2:])} of {module}"
    return _dotted(path)


def where(path: SpecPath, data: Any) -> str:
    """Where a key sits: "in level 'outer'", "in train", "at the top level"."""
    return "at the top level" if not path else f"in {describe(path, data)}"


def _is_named_entry(path: SpecPath) -> bool:
    # Entries that `describe` names by themselves: a module, a block of a module chain.
    return (len(path) == 2 and path[0] == "modules") or (
        len(path) == 4 and path[0] == "modules" and path[2] == "blocks"
    )


def subject(path: SpecPath, data: Any) -> str:
    """The entry an error is about: "'steps' in train", "owns[1] of level 'outer'"."""
    if path and isinstance(path[-1], str) and not _is_named_entry(path):
        return f"'{path[-1]}' {where(path[:-1], data)}"
    return describe(path, data)


def show(value: Any) -> str:
    """A value as the user wrote it, shortened."""
    if isinstance(value, str):
        text = f"'{value}'"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def did_you_mean(word: Any, candidates: list[str]) -> str:
    matches = difflib.get_close_matches(str(word), candidates, n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else ""


# ------------------------------------------------------------------------- one error each


def _extra(path: SpecPath, data: Any) -> Diagnostic:
    parent, key = path[:-1], path[-1]
    model = model_at(parent, data)
    allowed = list(model.model_fields) if model is not None else []
    present = data_at(parent, data)
    # A key already written is seldom what a misspelling meant: look among the others first.
    unused = [k for k in allowed if not (isinstance(present, dict) and k in present)]
    return Diagnostic(
        f"unknown key '{key}' {where(parent, data)}",
        path,
        hint=did_you_mean(key, unused) or did_you_mean(key, allowed),
        code=CODE,
        part="key",
        notes=(f"allowed keys: {', '.join(allowed)}",) if allowed else (),
    )


def _union_kind(path: SpecPath) -> str:
    field = path[-1] if path else ""
    if len(path) == 2 and path[0] == "modules":
        return "module type"
    return "objective" if field == "objective" else f"{field} type"


def _union_owner(path: SpecPath, data: Any) -> str:
    if len(path) == 2 and path[0] == "modules":
        return f"for module '{path[1]}'"
    return where(path[:-1], data)


def _tag_invalid(path: SpecPath, data: Any, ctx: dict[str, Any]) -> Diagnostic:
    tag = ctx.get("tag", "")
    tags = union_tags(_field_type(path, data)) or _QUOTED.findall(str(ctx.get("expected_tags")))
    node = data_at(path, data)
    at = (*path, "type") if isinstance(node, dict) and "type" in node else path
    return Diagnostic(
        f"unknown {_union_kind(path)} '{tag}' {_union_owner(path, data)}",
        at,
        hint=did_you_mean(tag, tags),
        code=CODE,
        notes=(f"known: {', '.join(tags)}",) if tags else (),
    )


def _field_type(path: SpecPath, data: Any) -> Any:
    """The declared type at `path`, before any union is resolved by the data."""
    if not path:
        return Spec
    parent = type_at(path[:-1], data)
    return child_type(parent, path[-1]) if parent is not None else None


def _tag_missing(path: SpecPath, data: Any) -> Diagnostic:
    tags = union_tags(_field_type(path, data))
    return Diagnostic(
        f"missing 'type' {where(path, data)}",
        (*path, "type"),
        hint=f"add 'type:' with one of: {', '.join(tags)}" if tags else "",
        code=CODE,
    )


def _missing(path: SpecPath, data: Any) -> Diagnostic:
    parent, key = path[:-1], path[-1]
    model = model_at(parent, data)
    field = model.model_fields.get(key) if model is not None and isinstance(key, str) else None
    choices = literal_choices(field.annotation) if field is not None else []
    hint = f"add '{key}:' with one of: {', '.join(choices)}" if choices else f"add '{key}:'"
    notes = (f"'{key}' is the {field.description}",) if field and field.description else ()
    return Diagnostic(
        f"missing key '{key}' {where(parent, data)}", path, hint=hint, code=CODE, notes=notes
    )


def _literal(path: SpecPath, data: Any, value: Any, ctx: dict[str, Any]) -> Diagnostic:
    choices = literal_choices(_field_type(path, data)) or _QUOTED.findall(
        str(ctx.get("expected", ""))
    )
    if path == ("nestgraph",):
        return Diagnostic(
            f"unsupported spec format version {show(value)}: this nestgraph reads version "
            f"{', '.join(choices)}",
            path,
            hint=f"write 'nestgraph: {choices[-1]}'" if choices else "",
            code=CODE,
        )
    return Diagnostic(
        f"{subject(path, data)}: {show(value)} is not one of: {', '.join(choices)}",
        path,
        hint=did_you_mean(value, choices),
        code=CODE,
    )


def _not_a_mapping(path: SpecPath, data: Any, value: Any) -> Diagnostic:
    tags = union_tags(_field_type(path, data))
    hint = ""
    if isinstance(value, str) and value in tags:
        hint = f"write it as a mapping: {{type: {value}, ...}}"
    elif tags:
        hint = f"write a mapping with 'type:' one of: {', '.join(tags)}"
    return Diagnostic(
        f"{subject(path, data)} must be a mapping of keys, not {kind_of(value)}",
        path,
        hint=hint,
        code=CODE,
    )


def _generic(path: SpecPath, data: Any, error: dict[str, Any]) -> Diagnostic:
    message = str(error["msg"])
    message = message[:1].lower() + message[1:]
    value = error.get("input")
    got = f" (got {show(value)})" if not isinstance(value, (dict, list)) else ""
    return Diagnostic(f"{subject(path, data)}: {message}{got}", path, code=CODE)


# pydantic's range checks (a Field's ge, gt, le, lt) and its refusal of inf and nan.
_BOUND_ERRORS = {"greater_than": ("gt", "more than"), "greater_than_equal": ("ge", "at least"),
                 "less_than": ("lt", "less than"), "less_than_equal": ("le", "at most")}


def _limits(path: SpecPath, data: Any) -> dict[str, Any]:
    """The bounds the schema sets on the entry at `path` (``{"ge": 0, "lt": 1}``)."""
    parent = type_at(path[:-1], data) if path else None
    metadata: list[Any] = []
    if is_model(parent) and isinstance(path[-1], str) and path[-1] in parent.model_fields:
        metadata = list(parent.model_fields[path[-1]].metadata)
    else:
        tp = _field_type(path, data)
        while get_origin(tp) is Annotated:
            args = get_args(tp)
            for extra in args[1:]:
                metadata.extend(getattr(extra, "metadata", None) or [extra])
            tp = args[0]
    return {key: getattr(item, key) for item in metadata
            for key in ("gt", "ge", "lt", "le") if getattr(item, key, None) is not None}


def _range_words(limits: dict[str, Any]) -> str:
    words = {"gt": "more than", "ge": "at least", "lt": "less than", "le": "at most"}
    return " and ".join(f"{words[key]} {limits[key]:,}" if isinstance(limits[key], int)
                        else f"{words[key]} {limits[key]:g}"
                        for key in ("gt", "ge", "lt", "le") if key in limits)


def _bound(path: SpecPath, data: Any, error: dict[str, Any]) -> Diagnostic:
    """A number outside the range its field allows, or not finite."""
    value, kind = error.get("input"), error["type"]
    limits = _limits(path, data)
    if not limits and kind in _BOUND_ERRORS:
        key = _BOUND_ERRORS[kind][0]
        limits = {key: error.get("ctx", {}).get(key)}
    wanted = _range_words(limits)
    if kind == "finite_number":
        message = f"{subject(path, data)} must be a finite number, not {show(value)}"
        hint = f"write a finite number{f' ({wanted})' if wanted else ''}"
    elif kind == "int_parsing_size":
        message = f"{subject(path, data)}: {show(value)} is far too large"
        hint = f"use a value {wanted}" if wanted else "use a smaller number"
    else:
        message = f"{subject(path, data)}: {show(value)} is out of range: it must be {wanted}"
        hint = f"use a value {wanted}"
    return Diagnostic(message, path, hint=hint, code=CODE)


_MAPPING_ERRORS = {"model_type", "model_attributes_type", "dict_type"}
_MEMBER_WORDS = {"float": "a number", "int": "an integer", "str": "a string", "bool": "a boolean"}


def _convert(error: dict[str, Any], located: Located, data: Any) -> Diagnostic:
    kind, path = error["type"], located.path
    ctx = error.get("ctx") or {}
    if "hint" in ctx:  # the schema's own errors say how to fix them
        return Diagnostic(str(error["msg"]), path, hint=str(ctx["hint"]), code=CODE,
                          part=located.part)
    if kind in _BOUND_ERRORS or kind in ("finite_number", "int_parsing_size"):
        return _bound(path, data, error)
    if kind == "extra_forbidden":
        return _extra(path, data)
    if kind == "union_tag_invalid":
        return _tag_invalid(path, data, error.get("ctx", {}))
    if kind == "union_tag_not_found":
        return _tag_missing(path, data)
    if kind == "missing":
        return _missing(path, data)
    if kind == "literal_error":
        return _literal(path, data, error.get("input"), error.get("ctx", {}))
    if kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
        return Diagnostic(message, path, code=CODE, part=located.part)
    if kind in _MAPPING_ERRORS:
        return _not_a_mapping(path, data, error.get("input"))
    return _generic(path, data, error)


def _union_mismatch(path: SpecPath, members: list[str], value: Any, data: Any) -> Diagnostic:
    """One diagnostic for a value that fits none of a plain union's members (float | str)."""
    words = [_MEMBER_WORDS.get(m, m) for m in dict.fromkeys(members)]
    wanted = " or ".join(words)
    return Diagnostic(
        f"{subject(path, data)} must be {wanted}, not {kind_of(value)}", path, code=CODE
    )


def diagnostics_from_pydantic(err: ValidationError, data: Any) -> list[Diagnostic]:
    """Every error of `err` (raised validating `data` as a `Spec`) as a diagnostic."""
    # A value that fits no member of a plain union (float | str) gets one error per member
    # from pydantic; they become one diagnostic, in the place of the first.
    entries: list[Diagnostic | SpecPath] = []
    unions: dict[SpecPath, tuple[list[str], Any]] = {}
    for error in err.errors():
        located = locate(tuple(error["loc"]), data)
        if not located.union_member:
            entries.append(_convert(error, located, data))
            continue
        if located.path not in unions:
            unions[located.path] = ([], error.get("input"))
            entries.append(located.path)
        unions[located.path][0].append(located.union_member)
    return [
        entry if isinstance(entry, Diagnostic) else _union_mismatch(entry, *unions[entry], data)
        for entry in entries
    ]
