"""The kinds registry: module kinds and rules looked up by their spec tag.

The built-in kinds are registered when `nestgraph.compiler.kinds` is imported. A kind from
outside the package is added with `register` (or, scoped, the `registered` context manager),
which also adds its schema model to the spec's schema, so that specs naming it validate.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nestgraph.compiler.kinds.base import ModuleKind, RuleKind

MODULE_KINDS: dict[str, ModuleKind] = {}
RULE_KINDS: dict[str, RuleKind] = {}


def module_kind(tag: str) -> ModuleKind:
    try:
        return MODULE_KINDS[tag]
    except KeyError:
        raise KeyError(f"no module kind {tag!r} is registered "
                       f"(known: {', '.join(sorted(MODULE_KINDS))})") from None


def rule_kind(tag: str) -> RuleKind:
    try:
        return RULE_KINDS[tag]
    except KeyError:
        raise KeyError(f"no rule {tag!r} is registered "
                       f"(known: {', '.join(sorted(RULE_KINDS))})") from None


def register(kind: ModuleKind | RuleKind, schema_model=None) -> None:
    """Add a module kind or a rule; with `schema_model` (a pydantic model whose ``type`` field is
    ``Literal[kind.tag]``), the spec's schema accepts it too."""
    from nestgraph.spec.schema import register_model

    table = MODULE_KINDS if isinstance(kind, ModuleKind) else RULE_KINDS
    if kind.tag in table:
        raise ValueError(f"a kind {kind.tag!r} is already registered")
    if schema_model is not None:
        register_model("module" if table is MODULE_KINDS else "rule", schema_model)
    table[kind.tag] = kind


def unregister(kind: ModuleKind | RuleKind) -> None:
    """Remove what `register` added (its schema model too)."""
    from nestgraph.spec.schema import unregister_model

    table = MODULE_KINDS if isinstance(kind, ModuleKind) else RULE_KINDS
    table.pop(kind.tag, None)
    unregister_model("module" if table is MODULE_KINDS else "rule", kind.tag)


@contextmanager
def registered(kind: ModuleKind | RuleKind, schema_model=None) -> Iterator[None]:
    """`register` for the duration of a block: nothing remains registered after it."""
    register(kind, schema_model)
    try:
        yield
    finally:
        unregister(kind)
