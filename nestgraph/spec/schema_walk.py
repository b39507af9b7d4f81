"""Walking the schema along a path into the user's document: the type, model and data at a
path, and pydantic's ``loc`` (which carries union tags and validator names) turned into that
path."""

from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from nestgraph.spec.schema import Spec
from nestgraph.spec.source import SpecPath

# Segments pydantic adds to `loc` for its own validators: 'function-after[...]', 'chain[...]'.
_INTERNAL = re.compile(r"^[a-z][\w-]*\[.*\]$")


_MISSING = object()


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _union_members(tp: Any) -> list[Any] | None:
    if get_origin(tp) in (Union, types.UnionType):
        return [_unwrap(arg) for arg in get_args(tp)]
    return None


def _tag(model: Any) -> str | None:
    """The `type` tag of a union member model (``AdamW`` -> ``'adamw'``)."""
    if not is_model(model) or "type" not in model.model_fields:
        return None
    args = get_args(_unwrap(model.model_fields["type"].annotation))
    return str(args[0]) if args else None


def union_tags(tp: Any) -> list[str]:
    members = _union_members(_unwrap(tp)) or []
    return [tag for tag in map(_tag, members) if tag is not None]


def _pick_member(tp: Any, node: Any) -> Any:
    """The member of a tagged union that `node` selects, or the union itself if none does."""
    members = _union_members(tp)
    if members is None:
        return tp
    tag = node.get("type") if isinstance(node, dict) else node  # a bare tag is a shorthand
    for member in members:
        if isinstance(tag, str) and _tag(member) == tag:
            return member
    return tp


def child_type(tp: Any, segment: str | int) -> Any:
    tp = _unwrap(tp)
    if is_model(tp):
        field = tp.model_fields.get(segment) if isinstance(segment, str) else None
        return field.annotation if field is not None else None
    origin, args = get_origin(tp), get_args(tp)
    if origin is list and args:
        return args[0]
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return args[segment] if isinstance(segment, int) and segment < len(args) else None
    if origin is dict and len(args) == 2:
        return args[1]
    return None


def child_data(node: Any, segment: str | int) -> Any:
    if isinstance(node, dict) and segment in node:
        return node[segment]
    if isinstance(node, list) and isinstance(segment, int) and 0 <= segment < len(node):
        return node[segment]
    return _MISSING


def data_at(path: SpecPath, data: Any) -> Any:
    node = data
    for segment in path:
        node = child_data(node, segment)
        if node is _MISSING:
            return _MISSING
    return node


def type_at(path: SpecPath, data: Any) -> Any:
    """The schema type of the entry at `path`, tagged unions resolved by the data's `type`."""
    tp: Any = Spec
    node = data
    for segment in path:
        tp = _pick_member(_unwrap(tp), node)
        tp = child_type(tp, segment)
        if tp is None:
            return None
        node = child_data(node, segment)
    return _pick_member(_unwrap(tp), node)


def model_at(path: SpecPath, data: Any) -> type[BaseModel] | None:
    tp = type_at(path, data)
    return tp if is_model(tp) else None


def literal_choices(tp: Any) -> list[str]:
    tp = _unwrap(tp)
    return [str(arg) for arg in get_args(tp)] if get_origin(tp) is Literal else []


class Located(typing.NamedTuple):
    path: SpecPath
    part: str
    # The scalar types of a plain union a member error came from ('float' of float | str).
    union_member: str


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def locate(loc: tuple[str | int, ...], data: Any) -> Located:
    """Drop the segments of `loc` that are not in the document: union tags, validator names."""
    tp: Any = Spec
    node = data
    path: list[str | int] = []
    part, member = "value", ""
    for segment in loc:
        members = _union_members(_unwrap(tp)) if tp is not None else None
        if members is not None:
            by_name = {_tag(m) or _type_name(m): m for m in members}
            if segment in by_name:
                tp = by_name[segment]
                member = "" if _tag(by_name[segment]) else str(segment)
                continue
        if segment == "[key]":
            part = "key"
            continue
        in_data = child_data(node, segment) is not _MISSING
        if isinstance(segment, str) and _INTERNAL.match(segment) and not in_data:
            continue
        path.append(segment)
        node = child_data(node, segment)
        tp = child_type(tp, segment) if tp is not None else None
    return Located(tuple(path), part, member)


def document_path(loc: tuple[str | int, ...], data: Any) -> SpecPath:
    """pydantic's `loc` as a path into the user's document (union tags, validators dropped)."""
    return locate(tuple(loc), data).path
