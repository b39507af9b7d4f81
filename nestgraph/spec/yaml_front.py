"""Reading a spec's YAML safely, keeping the position of every key and value.

Spec files are untrusted input. pyyaml is used only to *compose* the node tree with its safe
loader; Python data is built here from the nodes, which lets this module

* record the span of every key and value (for diagnostics),
* reject what pyyaml accepts silently: duplicate keys, tags that name Python objects, alias
  bombs ("billion laughs"), keys that are not strings,
* resolve plain scalars by the YAML 1.2 core schema, so ``1e-3`` is a float and ``no`` is the
  string "no" (pyyaml follows YAML 1.1, where the opposite holds).
"""

from __future__ import annotations

from typing import Any

import yaml

from nestgraph.errors import Diagnostic, SpecError
from nestgraph.spec.source import SourceFile, Span, SpecPath
from nestgraph.spec.yaml_compose import (
    CODE,
    MAX_DEPTH,
    Alias,
    LimitExceeded,
    Loader,
    check_expansion,
    compose,
    node_span,
)
from nestgraph.spec.yaml_scalars import (
    ALLOWED_TAGS,
    STD_TAG,
    NumberTooLong,
    kind_of,
    resolve_plain,
    short_tag,
    surrogate_in,
    surrogate_problem,
)

# --------------------------------------------------------------------------------- composing


# ---------------------------------------------------------------------------------- building


class _Builder:
    """Turns the composed node tree into Python data, recording spans and collecting errors."""

    def __init__(self, loader: Loader, source: SourceFile) -> None:
        self.explicit_tags = loader.explicit_tags
        self.source = source
        self.errors: list[Diagnostic] = []
        self.in_progress: set[int] = set()

    def error(self, message: str, span: Span, hint: str = "", notes: tuple[str, ...] = ()) -> None:
        path = self.source.pin(span)
        self.errors.append(Diagnostic(message, path, hint=hint, code=CODE, notes=notes))

    def span_of(self, node: Any) -> Span:
        return node_span(node.start_mark, node.end_mark, self.source)

    def build(self, node: Any, path: SpecPath, depth: int) -> Any:
        span = self.span_of(node)
        target = node.target if isinstance(node, Alias) else node
        if _is_empty(target, self.explicit_tags):
            # An empty value has a zero-width span after the colon: underline the key instead.
            span = self.source.keys.get(path, span)
        self.source.values[path] = span
        if depth > MAX_DEPTH:
            raise LimitExceeded(f"values are nested more than {MAX_DEPTH} deep", node.start_mark)
        if id(target) in self.in_progress:
            self.error(
                "this alias refers to a value that contains it, which would never end", span
            )
            return None
        if isinstance(target, yaml.ScalarNode):
            return self.scalar(target, span)
        self.in_progress.add(id(target))
        try:
            if isinstance(target, yaml.MappingNode):
                self.check_tag(target, "mapping", span)
                return self.mapping(target, path, depth)
            self.check_tag(target, "sequence", span)
            return [
                self.build(item, (*path, i), depth + 1) for i, item in enumerate(target.value)
            ]
        finally:
            self.in_progress.discard(id(target))

    def check_tag(self, node: Any, kind: str, span: Span) -> bool:
        tag = self.explicit_tags.get(id(node))
        if tag is None or tag in ALLOWED_TAGS[kind]:
            return True
        notes: tuple[str, ...] = ()
        if "python/" in tag:
            notes = ("tags that name Python objects could run code if loaded unsafely",)
        self.error(
            f"tag '{short_tag(tag)}' is not allowed in a spec",
            span,
            "a spec holds plain data (mappings, lists, strings, numbers, true/false, null): "
            "remove the tag",
            notes,
        )
        return False

    def scalar(self, node: yaml.ScalarNode, span: Span) -> Any:
        if not self.check_tag(node, "scalar", span):
            return None
        bad = surrogate_in(node.value)
        if bad is not None:
            self.error(*_pair(surrogate_problem(bad), span))
            return None
        tag = self.explicit_tags.get(id(node))
        try:
            if tag is None:
                return resolve_plain(node.value) if node.style is None else node.value
            if tag in ("!", STD_TAG + "str"):
                return node.value
            return self.tagged_scalar(node.value, tag, span)
        except NumberTooLong as err:
            self.error(*_pair(err.describe(), span))
            return None

    def tagged_scalar(self, text: str, tag: str, span: Span) -> Any:
        value = resolve_plain(text)
        wanted = tag[len(STD_TAG) :]
        fits = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "null": value is None,
        }[wanted]
        if not fits:
            self.error(f"'{text}' cannot be read as {short_tag(tag)}", span)
            return None
        return float(value) if wanted == "float" else value

    def mapping(self, node: yaml.MappingNode, path: SpecPath, depth: int) -> dict[str, Any]:
        # Merged (`<<`) entries go in first so that keys written here replace them, spans too.
        merges = [v for k, v in node.value if _is_merge_key(k, self.explicit_tags)]
        result = self.merged(merges, path, depth)
        first_seen: dict[str, Span] = {}
        for key_node, value_node in node.value:
            if _is_merge_key(key_node, self.explicit_tags):
                continue
            key = self.key(key_node)
            if key is None:
                continue
            key_span = self.span_of(key_node)
            if key in first_seen:
                self.duplicate(key, key_span, first_seen[key])
                continue
            first_seen[key] = key_span
            self.source.keys[(*path, key)] = key_span
            result[key] = self.build(value_node, (*path, key), depth + 1)
        return result

    def merged(self, merges: list[Any], path: SpecPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        sources = [item for m in merges for item in _merge_sources(m)]
        for source_node in sources:
            target = source_node.target if isinstance(source_node, Alias) else source_node
            if not isinstance(target, yaml.MappingNode):
                self.error("'<<' merges mappings only", self.span_of(source_node))
                continue
            if id(target) in self.in_progress:
                span = self.span_of(source_node)
                self.error("this merge refers to the mapping that contains it", span)
                continue
            self.in_progress.add(id(target))
            try:
                entries = self.mapping(target, path, depth)
            finally:
                self.in_progress.discard(id(target))
            for key, value in entries.items():
                result.setdefault(key, value)  # YAML's rule: the first mapping listed wins
        return result

    def key(self, node: Any) -> str | None:
        span = self.span_of(node)
        target = node.target if isinstance(node, Alias) else node
        if not isinstance(target, yaml.ScalarNode):
            kind = "mapping" if isinstance(target, yaml.MappingNode) else "list"
            self.error(f"a key must be a string, not a {kind}", span)
            return None
        reported = len(self.errors)
        value = self.scalar(target, span)
        if isinstance(value, str) or len(self.errors) > reported:
            return value if isinstance(value, str) else None  # a bad tag is reported already
        if value is None and target.value in ("", "~", "null", "Null", "NULL"):
            self.error("a key must be a string, not null", span, "write a name before ':'")
            return None
        self.error(
            f"key {target.value} is read as {kind_of(value)}; keys must be strings",
            span,
            f"write it in quotes: '{target.value}'",
        )
        return None

    def duplicate(self, key: str, span: Span, first: Span) -> None:
        self.error(
            f"duplicate key '{key}'",
            span,
            "remove one of them: YAML would silently keep only the last",
            (f"'{key}' is first set at {self.source.filename}:{first.line}:{first.col}",),
        )


def _pair(problem: tuple[str, str], span: Span) -> tuple[str, Span, str]:
    message, hint = problem
    return message, span, hint


def _is_empty(node: Any, explicit_tags: dict[int, str]) -> bool:
    return (
        isinstance(node, yaml.ScalarNode)
        and node.value == ""
        and node.style is None
        and id(node) not in explicit_tags
    )


def _is_merge_key(node: Any, explicit_tags: dict[int, str]) -> bool:
    if not isinstance(node, yaml.ScalarNode) or node.style is not None:
        return False
    return node.value == "<<" and explicit_tags.get(id(node)) in (None, STD_TAG + "merge")


def _merge_sources(node: Any) -> list[Any]:
    target = node.target if isinstance(node, Alias) else node
    if isinstance(target, yaml.SequenceNode):
        return list(target.value)
    return [node]


# ------------------------------------------------------------------------------ entry points


def _build(root: Any, loader: Loader, source: SourceFile) -> tuple[Any, list[Diagnostic]]:
    builder = _Builder(loader, source)
    try:
        check_expansion(root, loader.alias_uses)
        data = builder.build(root, (), 0)
    except LimitExceeded as err:
        return None, [*builder.errors, err.diagnostic(source)]
    return data, builder.errors


def _parse(text: str, source: SourceFile) -> tuple[Any, list[Diagnostic], bool]:
    """Data, errors, and whether the document had any content at all."""
    root, loader, errors = compose(text, source)
    if errors:
        return None, errors, True
    if root is None:
        return None, [], False
    data, errors = _build(root, loader, source)
    return data, errors, True


def load_yaml(text: str, filename: str) -> tuple[Any, SourceFile]:
    """Parse a spec document into plain data and its source map; raise `SpecError` if invalid."""
    source = SourceFile(filename=filename, text=text)
    data, errors, present = _parse(text, source)
    # Diagnostics about the whole document point at line 1, column 1.
    source.values[()] = Span(1, 1, 2)
    if not present or (data is None and not errors):
        errors = [Diagnostic("the spec is empty", (), code=CODE,
                             hint="a spec starts with 'nestgraph: 1' and 'name: ...'")]
    elif not errors and not isinstance(data, dict):
        errors = [Diagnostic(
            f"the top level of a spec must be a mapping of keys, not {kind_of(data)}",
            (),
            hint="a spec starts with 'nestgraph: 1' and 'name: ...'",
            code=CODE,
        )]
    if errors:
        raise SpecError(errors, source)
    return data, source


def load_value(text: str) -> Any:
    """One YAML value typed on a command line (``[attn, mlp]``, ``1e-3``), read as a spec is.

    Raises `SpecError` with the problems (their positions are within `text`).
    """
    source = SourceFile(filename="<value>", text=text)
    data, errors, _ = _parse(text, source)
    if errors:
        raise SpecError(errors, source)
    return data
