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

import math
import re
from typing import Any

import yaml

from nestgraph.errors import Diagnostic, SpecError
from nestgraph.spec.source import SourceFile, Span, SpecPath

CODE = "E-YAML"

MAX_ALIASES = 100
# Values aliases may add to a document beyond those written out (a "billion laughs" adds
# billions); the values written are bounded by the size of the file instead.
MAX_EXPANSION = 100_000
MAX_DEPTH = 100
# Longest number literal read: Python refuses to convert decimal integers of more than 4,300
# digits, and no spec needs more than a few dozen characters for a number.
MAX_NUMBER_LENGTH = 100

_STD = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_STD + name for name in ("str", "int", "float", "bool", "null")}
_ALLOWED_TAGS = {
    "scalar": _SCALAR_TAGS | {"!"},
    "mapping": {_STD + "map", "!"},
    "sequence": {_STD + "seq", "!"},
}

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), plus '_' between
# digits as in Python (4_000_000), which YAML 1.1 allowed too.
_DIGITS = r"[0-9](?:_?[0-9])*"
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_TRUE = re.compile(r"^(?:true|True|TRUE)$")
_FALSE = re.compile(r"^(?:false|False|FALSE)$")
_INT = re.compile(rf"^[-+]?{_DIGITS}$")
_OCT = re.compile(r"^0o[0-7]+$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(rf"^[-+]?(?:\.{_DIGITS}|{_DIGITS}(?:\.(?:{_DIGITS})?)?)(?:[eE][-+]?[0-9]+)?$")
_LINE_BREAKS = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")  # as pyyaml counts lines
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")
_SURROGATE = re.compile("[\ud800-\udfff]")


class NumberTooLong(ValueError):
    """A number literal longer than `MAX_NUMBER_LENGTH` characters."""

    def __init__(self, text: str) -> None:
        super().__init__(f"a number of {len(text):,} characters")
        self.length = len(text)

    def describe(self) -> tuple[str, str]:
        """Message and hint for a diagnostic."""
        return (f"this number is {self.length:,} characters long; a spec's numbers have at "
                f"most {MAX_NUMBER_LENGTH}",
                "write a shorter number (for a large value, e.g. 1e9), or quote it if it is "
                "meant as text")


def resolve_plain(text: str) -> Any:
    """The value of an untagged, unquoted scalar under the YAML 1.2 core schema.

    Raises `NumberTooLong` for a number literal of more than `MAX_NUMBER_LENGTH` characters.
    """
    if len(text) > MAX_NUMBER_LENGTH and (
        _INT.match(text) or _OCT.match(text) or _HEX.match(text) or _FLOAT.match(text)
    ):
        raise NumberTooLong(text)
    if _NULL.match(text):
        return None
    if _TRUE.match(text):
        return True
    if _FALSE.match(text):
        return False
    if _INT.match(text):
        return int(text)
    if _OCT.match(text):
        return int(text[2:], 8)
    if _HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


def reads_as_string(text: str) -> bool:
    """Whether `text`, written unquoted, would be read back as this string."""
    try:
        return isinstance(resolve_plain(text), str)
    except NumberTooLong:
        return False


def surrogate_in(text: str) -> str | None:
    """The first lone surrogate in `text` (from an escape such as \\ud800), if any."""
    found = _SURROGATE.search(text)
    return found.group() if found else None


def surrogate_problem(ch: str) -> tuple[str, str]:
    """Message and hint for a string that holds the lone surrogate `ch`."""
    return (f"this string holds U+{ord(ch):04X}, half of a surrogate pair, which is not a "
            "character",
            "write the character itself (or \\UXXXXXXXX for one beyond U+FFFF)")


def short_tag(tag: str) -> str:
    return "!!" + tag[len(_STD) :] if tag.startswith(_STD) else tag


def kind_of(value: Any) -> str:
    """How a value reads to the person who wrote it: 'a mapping', 'a number'..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


# --------------------------------------------------------------------------------- composing


class _Alias:
    """An alias use in the node tree: the node it names, and where the alias was written.

    pyyaml's composer returns the anchored node itself for an alias, losing the alias's own
    position and making alias uses indistinguishable from the anchored original.
    """

    def __init__(self, target: yaml.Node, start_mark: Any, end_mark: Any) -> None:
        self.target = target
        self.start_mark = start_mark
        self.end_mark = end_mark


class _LimitExceeded(Exception):
    def __init__(self, message: str, mark: Any, hint: str = "", end_mark: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark
        self.end_mark = end_mark
        self.hint = hint

    def diagnostic(self, source: SourceFile) -> Diagnostic:
        if self.end_mark is None:
            span = _mark_span(self.mark)
        else:
            span = _span(self.mark, self.end_mark, source)
        return Diagnostic(self.message, source.pin(span), hint=self.hint, code=CODE)


class _Loader(yaml.SafeLoader):
    """The safe loader, used to compose only, counting aliases and noting explicit tags."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.alias_uses = 0
        self.explicit_tags: dict[int, str] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self.alias_uses += 1
            if self.alias_uses > MAX_ALIASES:
                raise _LimitExceeded(
                    f"more than {MAX_ALIASES} aliases (*name) in one document",
                    event.start_mark,
                    "a spec needs few aliases; this limit stops documents that expand "
                    "exponentially",
                )
            target = super().compose_node(parent, index)
            return _Alias(target, event.start_mark, event.end_mark)
        tag = getattr(event, "tag", None)
        node = super().compose_node(parent, index)
        if tag is not None:
            # The resolved node.tag cannot tell `!!str 1e-3` from a plain `1e-3`.
            self.explicit_tags[id(node)] = tag
        return node


def _span(start: Any, end: Any, source: SourceFile) -> Span:
    line, col = start.line + 1, start.column + 1
    if end.line == start.line:
        end_col = end.column + 1
    else:
        # Spans are one line long: a block that runs on is underlined to its first line's end.
        end_col = len(source.line_text(line).rstrip()) + 1
    return Span(line, col, max(end_col, col + 1))


def _mark_span(mark: Any) -> Span:
    return Span(mark.line + 1, mark.column + 1, mark.column + 2)


# ---------------------------------------------------------------------------------- building


class _Builder:
    """Turns the composed node tree into Python data, recording spans and collecting errors."""

    def __init__(self, loader: _Loader, source: SourceFile) -> None:
        self.explicit_tags = loader.explicit_tags
        self.source = source
        self.errors: list[Diagnostic] = []
        self.in_progress: set[int] = set()

    def error(self, message: str, span: Span, hint: str = "", notes: tuple[str, ...] = ()) -> None:
        path = self.source.pin(span)
        self.errors.append(Diagnostic(message, path, hint=hint, code=CODE, notes=notes))

    def span_of(self, node: Any) -> Span:
        return _span(node.start_mark, node.end_mark, self.source)

    def build(self, node: Any, path: SpecPath, depth: int) -> Any:
        span = self.span_of(node)
        target = node.target if isinstance(node, _Alias) else node
        if _is_empty(target, self.explicit_tags):
            # An empty value has a zero-width span after the colon: underline the key instead.
            span = self.source.keys.get(path, span)
        self.source.values[path] = span
        if depth > MAX_DEPTH:
            raise _LimitExceeded(f"values are nested more than {MAX_DEPTH} deep", node.start_mark)
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
        if tag is None or tag in _ALLOWED_TAGS[kind]:
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
            if tag in ("!", _STD + "str"):
                return node.value
            return self.tagged_scalar(node.value, tag, span)
        except NumberTooLong as err:
            self.error(*_pair(err.describe(), span))
            return None

    def tagged_scalar(self, text: str, tag: str, span: Span) -> Any:
        value = resolve_plain(text)
        wanted = tag[len(_STD) :]
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
            target = source_node.target if isinstance(source_node, _Alias) else source_node
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
        target = node.target if isinstance(node, _Alias) else node
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
    return node.value == "<<" and explicit_tags.get(id(node)) in (None, _STD + "merge")


def _merge_sources(node: Any) -> list[Any]:
    target = node.target if isinstance(node, _Alias) else node
    if isinstance(target, yaml.SequenceNode):
        return list(target.value)
    return [node]


# ------------------------------------------------------------------------------ entry points


def _syntax_error(err: yaml.YAMLError, source: SourceFile) -> Diagnostic:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    notes: tuple[str, ...] = ()
    if context and problem.startswith("but "):
        # pyyaml splits one sentence in two: "expected a single document" / "but found ...".
        problem = f"{context}, {problem}"
    elif context and context_mark is not None:
        where = f"line {context_mark.line + 1}, column {context_mark.column + 1}"
        notes = (f"{context} that starts at {where}",)
    hint = "YAML does not allow tabs for indentation: use spaces" if "'\\t'" in problem else ""
    span = _mark_span(mark) if mark is not None else Span(1, 1, 2)
    return Diagnostic(f"invalid YAML: {problem}", source.pin(span), hint=hint, code=CODE,
                      notes=notes)


def _unreadable(err: yaml.reader.ReaderError, source: SourceFile) -> Diagnostic:
    """A character YAML refuses to read (a control character, a non-character)."""
    before = source.text[: err.position]
    line = len(_LINE_BREAKS.findall(before)) + 1
    col = err.position - max((m.end() for m in _LINE_BREAKS.finditer(before)), default=0) + 1
    code = err.character if isinstance(err.character, int) else ord(err.character)
    return Diagnostic(f"invalid YAML: the character U+{code:04X} is not allowed in a spec",
                      source.pin(Span(line, col, col + 1)), code=CODE,
                      hint="remove it (control characters cannot stand even in comments)")


def _compose(text: str, source: SourceFile) -> tuple[Any, _Loader | None, list[Diagnostic]]:
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as err:
        return None, None, [_unreadable(err, source)]
    try:
        return loader.get_single_node(), loader, []
    except _LimitExceeded as err:
        return None, None, [err.diagnostic(source)]
    except yaml.reader.ReaderError as err:
        return None, None, [_unreadable(err, source)]
    except yaml.YAMLError as err:
        return None, None, [_syntax_error(err, source)]
    except RecursionError:
        message = f"values are nested more than {MAX_DEPTH} deep"
        return None, None, [Diagnostic(message, source.pin(Span(1, 1, 2)), code=CODE)]
    finally:
        loader.dispose()


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_expansion(root: Any, aliases: int) -> None:
    """Fail before building if aliases would add more than `MAX_EXPANSION` values.

    What counts is the expansion (the values the document holds once every alias is replaced
    by what it names, less the values written out), not the size: a long spec without aliases
    is no attack. Sizes are summed once per distinct node, so this takes time in the size of
    the text even for a document that would expand to billions of values.
    """
    if not aliases:
        return
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        target = node.target if isinstance(node, _Alias) else node
        known = sizes.get(id(target))
        if known is not None:
            return known
        sizes[id(target)] = 1  # provisional: a recursive alias is reported while building
        total = 1 + sum(size(child) for child in _children(target))
        sizes[id(target)] = total
        # Every value below this one that is not a distinct node of its own came from an alias.
        if total - len(sizes) > MAX_EXPANSION:
            raise _LimitExceeded(
                f"aliases expand the document by more than {MAX_EXPANSION:,} values",
                target.start_mark,
                "this is how a 'billion laughs' attack looks; a spec's aliases repeat a few "
                "entries",
                target.end_mark,
            )
        return total

    size(root)


def _build(root: Any, loader: _Loader, source: SourceFile) -> tuple[Any, list[Diagnostic]]:
    builder = _Builder(loader, source)
    try:
        _check_expansion(root, loader.alias_uses)
        data = builder.build(root, (), 0)
    except _LimitExceeded as err:
        return None, [*builder.errors, err.diagnostic(source)]
    return data, builder.errors


def _parse(text: str, source: SourceFile) -> tuple[Any, list[Diagnostic], bool]:
    """Data, errors, and whether the document had any content at all."""
    root, loader, errors = _compose(text, source)
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
