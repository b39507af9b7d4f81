"""Reading a `.ng` spec: the DSL parsed by lark into the plain data the YAML front end makes.

The parse tree is turned into `_Node`s (a value and where it was written), statements are
gathered into one document node, and `_Materialize` walks that node once to give the plain
dict and to record the span of every key and value in the `SourceFile`. From there on a `.ng`
spec is indistinguishable from a YAML one: the same pydantic models, the same passes, and
diagnostics that point into the `.ng` text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from lark import Token, Transformer
from lark.exceptions import UnexpectedInput, VisitError

from nestgraph.errors import Diagnostic, SpecError
from nestgraph.spec.comments import Comment, comment_text
from nestgraph.spec.dsl_parser import _COMMENTS, CODE, parser
from nestgraph.spec.source import SourceFile, Span, SpecPath
from nestgraph.spec.yaml_compose import MAX_DEPTH
from nestgraph.spec.yaml_scalars import (
    NumberTooLong,
    resolve_plain,
    surrogate_in,
    surrogate_problem,
)

# --------------------------------------------------------------------------------- nodes


@dataclass
class _Node:
    """A value as written: a scalar, a list of nodes, or (key, key span, node) entries."""

    kind: str  # "scalar" | "list" | "dict"
    value: Any
    span: Span


@dataclass
class _Statement:
    key: str  # the top-level key it fills
    key_span: Span
    node: _Node
    entry: str | None = None  # for `module NAME = ...`: the module's name
    entry_span: Span | None = None


@dataclass
class Parsed:
    data: dict[str, Any]
    source: SourceFile
    comments: list[Comment] = field(default_factory=list)


class _Lines:
    """Turns tokens and tree positions into one-line spans (a span never leaves its line)."""

    def __init__(self, source: SourceFile) -> None:
        self.source = source

    def between(self, line: int, col: int, end_line: int, end_col: int) -> Span:
        if end_line != line:
            end_col = len(self.source.line_text(line).rstrip()) + 1
        return Span(line, col, max(end_col, col + 1))

    def token(self, tok: Token) -> Span:
        return self.between(tok.line, tok.column, tok.end_line, tok.end_column)

    def join(self, first: Span, last: Span) -> Span:
        return first if last.line != first.line else Span(first.line, first.col, last.end_col)


def _decode_string(tok: Token) -> str:
    try:
        text = json.loads(str(tok), strict=False)
    except ValueError:
        raise _BadToken(tok, "this string has an escape that is not allowed",
                        'allowed escapes: \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX') from None
    bad = surrogate_in(text)
    if bad is not None:
        message, _ = surrogate_problem(bad)
        raise _BadToken(tok, message, "write the character itself (or the pair \\uD83D\\uDE00 "
                        "for one beyond U+FFFF)")
    return text


def _number(tok: Token) -> Any:
    try:
        return resolve_plain(str(tok))
    except NumberTooLong as err:
        raise _BadToken(tok, *err.describe()) from None


# Strings and comments (whose brackets do not count) and the brackets that nest values.
_NESTING = re.compile(r'"(?:[^"\\\n\r]|\\[^\n\r])*"|#[^\n\r]*|[\[\]{}()]')


def _nesting_error(text: str, source: SourceFile) -> Diagnostic | None:
    """A diagnostic at the first bracket nested more than `MAX_DEPTH` deep, if any.

    Checked before parsing: the parse tree is walked recursively, and a value nested
    thousands deep would exhaust Python's stack.
    """
    depth = 0
    for found in _NESTING.finditer(text):
        ch = found.group()
        if ch in "[{(":
            depth += 1
            if depth > MAX_DEPTH:
                at = found.start()
                line = text.count("\n", 0, at) + 1
                col = at - text.rfind("\n", 0, at)
                return Diagnostic(f"values are nested more than {MAX_DEPTH} deep",
                                  source.pin(Span(line, col, col + 1)), code=CODE,
                                  hint="a spec's values nest a few levels deep: flatten this one")
        elif ch in "]})":
            depth = max(0, depth - 1)
    return None


class _BadToken(Exception):
    def __init__(self, tok: Token, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.tok, self.message, self.hint = tok, message, hint


# --------------------------------------------------------------------------- transformer


def _tokens(children: list[Any], *types: str) -> list[Token]:
    return [c for c in children if isinstance(c, Token) and c.type in types]


def _nodes(children: list[Any]) -> list[Any]:
    return [c for c in children if not isinstance(c, Token)]


class _ToNodes(Transformer):
    """Tree -> `_Node`s and `_Statement`s, keeping the span of everything."""

    def __init__(self, lines: _Lines) -> None:
        super().__init__()
        self.at = lines

    # values
    def _scalar(self, tok: Token, value: Any) -> _Node:
        return _Node("scalar", value, self.at.token(tok))

    def number(self, children: list[Token]) -> _Node:
        return self._scalar(children[0], _number(children[0]))

    def string(self, children: list[Token]) -> _Node:
        return self._scalar(children[0], _decode_string(children[0]))

    def word(self, children: list[Token]) -> _Node:
        return self._scalar(children[0], str(children[0]))

    def true(self, children: list[Token]) -> _Node:
        return self._scalar(children[0], True)

    def false(self, children: list[Token]) -> _Node:
        return self._scalar(children[0], False)

    def null(self, children: list[Token]) -> _Node:
        return self._scalar(children[0], None)

    def _bracketed(self, children: list[Any], kind: str, value: Any) -> _Node:
        first, last = children[0], children[-1]
        span = self.at.between(first.line, first.column, last.end_line, last.end_column)
        return _Node(kind, value, span)

    def list(self, children: list[Any]) -> _Node:
        return self._bracketed(children, "list", _nodes(children))

    def record(self, children: list[Any]) -> _Node:
        return self._bracketed(children, "dict", _nodes(children))

    def entry(self, children: list[Any]) -> tuple[str, Span, _Node]:
        key = children[0]
        name = _decode_string(key) if key.type == "STRING" else str(key)
        return name, self.at.token(key), children[-1]

    arg = entry

    def call(self, children: list[Any]) -> _Node:
        callee = children[0]
        at = self.at.token(callee)
        entries = [("type", at, _Node("scalar", str(callee), at)), *_nodes(children)]
        node = self._bracketed(children, "dict", entries)
        node.span = self.at.join(at, node.span)
        return node

    # level clauses and section entries: (key, key span, node)
    def pair(self, children: list[Any]) -> list[tuple[str, Span, _Node]]:
        return [(str(children[0]), self.at.token(children[0]), children[1])]

    def every(self, children: list[Token]) -> list[tuple[str, Span, _Node]]:
        keyword, *rest = children
        if rest[0].type == "STRING":
            value = self.string(rest)
        else:
            count, unit = rest
            value = _Node("scalar", f"{count} {unit}",
                          self.at.join(self.at.token(count), self.at.token(unit)))
        return [("every", self.at.token(keyword), value)]

    def on(self, children: list[Token]) -> list[tuple[str, Span, _Node]]:
        keyword, *rest = children
        if rest[0].type == "STRING":
            value = self.string(rest)
        else:
            span = self.at.join(self.at.token(rest[0]), self.at.token(rest[-1]))
            value = _Node("scalar", " ".join(str(t) for t in rest), span)
        return [("context", self.at.token(keyword), value)]

    def minimise(self, children: list[Any]) -> list[tuple[str, Span, _Node]]:
        minimise, objective, by, rule = children
        return [("objective", self.at.token(minimise), objective),
                ("rule", self.at.token(by), rule)]

    # statements
    def version(self, children: list[Any]) -> _Statement:
        keyword, number = children
        return _Statement("nestgraph", self.at.token(keyword), self.number([number]))

    def spec_name(self, children: list[Any]) -> _Statement:
        keyword, name = children
        return _Statement("name", self.at.token(keyword), self.word([name]))

    def about(self, children: list[Any]) -> _Statement:
        keyword, text = children
        return _Statement("about", self.at.token(keyword), self.string([text]))

    def section(self, children: list[Any]) -> _Statement:
        keyword = children[0]
        at = self.at.token(keyword)
        entries = [e for pair in _nodes(children) for e in pair]
        return _Statement(str(keyword), at, _Node("dict", entries, at))

    def module(self, children: list[Any]) -> _Statement:
        keyword, name, _equals, value = children
        return _Statement("modules", self.at.token(keyword), value, str(name),
                          self.at.token(name))

    def level(self, children: list[Any]) -> _Statement:
        keyword, name = children[0], children[1]
        colon = _tokens(children, "COLON")[0]
        head = self.at.between(keyword.line, keyword.column, colon.end_line, colon.end_column)
        name_node = _Node("scalar", str(name), self.at.token(name))
        entries = [("name", self.at.token(keyword), name_node)]
        entries += [e for clause in _nodes(children[2:]) for e in clause]
        return _Statement("levels", self.at.token(keyword), _Node("dict", entries, head))

    def start(self, children: list[Any]) -> list[_Statement]:
        return list(children)


# ------------------------------------------------------------------------------ assembling


def _document(statements: list[_Statement]) -> _Node:
    """The statements gathered into one mapping, keys in the order they first appear."""
    entries: list[tuple[str, Span, _Node]] = []
    gathered: dict[str, _Node] = {}
    for st in statements:
        if st.key == "modules":
            entry = (st.entry, st.entry_span, st.node)
        elif st.key == "levels":
            entry = st.node
        else:
            entries.append((st.key, st.key_span, st.node))
            continue
        if st.key not in gathered:
            kind = "dict" if st.key == "modules" else "list"
            gathered[st.key] = _Node(kind, [], st.key_span)
            entries.append((st.key, st.key_span, gathered[st.key]))
        gathered[st.key].value.append(entry)
    return _Node("dict", entries, Span(1, 1, 2))


class _Materialize:
    """Walks the document node once: the plain data, every span recorded, duplicates refused."""

    def __init__(self, source: SourceFile) -> None:
        self.source = source
        self.errors: list[Diagnostic] = []

    def __call__(self, node: _Node, path: SpecPath) -> Any:
        self.source.values[path] = node.span
        if node.kind == "scalar":
            return node.value
        if node.kind == "list":
            return [self(child, (*path, i)) for i, child in enumerate(node.value)]
        result: dict[str, Any] = {}
        for key, key_span, child in node.value:
            if key in result:
                self.duplicate(key, key_span, self.source.keys[(*path, key)])
                continue
            self.source.keys[(*path, key)] = key_span
            result[key] = self(child, (*path, key))
        return result

    def duplicate(self, key: str, span: Span, first: Span) -> None:
        where = f"{self.source.filename}:{first.line}:{first.col}"
        self.errors.append(Diagnostic(
            f"'{key}' is given twice", self.source.pin(span), code=CODE,
            hint="remove one of them", notes=(f"'{key}' is first given at {where}",)))


# ------------------------------------------------------------------------------ entry point


def _comments(text: str, tokens: list[Token]) -> list[Comment]:
    found = []
    for tok in tokens:
        line_start = text.rfind("\n", 0, tok.start_pos) + 1
        own_line = not text[line_start:tok.start_pos].strip()
        found.append(Comment(tok.line, tok.column, comment_text(str(tok)), own_line))
    return found


def parse_dsl(text: str, filename: str) -> Parsed:
    """Parse a `.ng` document; raise `SpecError` with every syntax error found."""
    from nestgraph.spec.dsl_errors import syntax_errors

    text = text.replace("\r\n", "\n").replace("\r", "\n")  # lark counts lines by \n
    source = SourceFile(filename=filename, text=text, breaks="ng")
    source.values[()] = Span(1, 1, 2)
    deep = _nesting_error(text, source)
    if deep is not None:
        raise SpecError([deep], source)
    comment_tokens: list[Token] = []
    reset = _COMMENTS.set(comment_tokens)
    try:
        tree = parser().parse(text)
    except UnexpectedInput:
        raise SpecError(syntax_errors(text, source), source) from None
    finally:
        _COMMENTS.reset(reset)
    lines = _Lines(source)
    try:
        statements = _ToNodes(lines).transform(tree)
    except VisitError as err:
        bad = err.orig_exc
        if not isinstance(bad, _BadToken):
            raise
        span = lines.token(bad.tok)
        raise SpecError([Diagnostic(bad.message, source.pin(span), hint=bad.hint, code=CODE)],
                        source) from None
    if not statements:
        raise SpecError([Diagnostic("the spec is empty", (), code=CODE,
                                    hint="a spec starts with 'nestgraph 1' and 'spec NAME'")],
                        source)
    build = _Materialize(source)
    data = build(_document(statements), ())
    source.gathered.update(k for k in (("modules",), ("levels",)) if k in source.keys)
    if build.errors:
        raise SpecError(build.errors, source)
    return Parsed(data, source, _comments(text, comment_tokens))


def load_dsl(text: str, filename: str) -> tuple[dict[str, Any], SourceFile]:
    """Like `load_yaml`: the plain data and its source map."""
    parsed = parse_dsl(text, filename)
    return parsed.data, parsed.source
