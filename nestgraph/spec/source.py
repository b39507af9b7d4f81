"""Where each entry of a spec came from, and diagnostics printed the way compilers print them.

A `Diagnostic` names a place by its *path* in the document. The `SourceFile` built by the YAML
front end maps every path to the span of its key and of its value, so a diagnostic made by any
pass can be shown as ``file:line:col`` with the offending line and a caret underline. Values
that came from a command-line override are shown as that override instead of a file position.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nestgraph.errors import Diagnostic
from nestgraph.escape import printable

SpecPath = tuple[str | int, ...]

# The first segment of paths that stand for a position rather than a document entry (a YAML
# syntax error, a malformed override): no key of a spec can start with '<', so they never
# collide with real paths.
POSITION_SEGMENT = "<position>"
OVERRIDE_SEGMENT = "<override>"

# The line breaks pyyaml counts when it numbers lines; Python's str.splitlines knows more (form
# feed, \x1c...), which would shift line numbers against the parser's marks.
_LINE_BREAK = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")
# The .ng language has one line break, \n (its front end turns \r\n and \r into it first).
_NG_LINE_BREAK = re.compile(r"\n")

# Longer source lines are shown as a window around the underlined span.
_MAX_SHOWN = 120


@dataclass(frozen=True)
class Span:
    """A stretch of one line: 1-based line and column, ``end_col`` exclusive."""

    line: int
    col: int
    end_col: int


@dataclass
class SourceFile:
    """A spec's text and the span of every key and value in it, by path."""

    filename: str
    text: str
    keys: dict[SpecPath, Span] = field(default_factory=dict)
    values: dict[SpecPath, Span] = field(default_factory=dict)
    # Paths set or deleted on the command line: (override number from 1, text as typed).
    overrides: dict[SpecPath, tuple[int, str]] = field(default_factory=dict)
    # How the front end that read the text counts lines: "yaml" (every break pyyaml knows)
    # or "ng" (\n only), so that positions and the lines shown agree.
    breaks: str = "yaml"
    # Paths placed at text that is not theirs alone (in a .ng file, `modules` and `levels` at
    # their first statement): errors may point there, comments never attach to them.
    gathered: set[SpecPath] = field(default_factory=set)
    _lines: list[str] | None = field(default=None, repr=False, compare=False)

    def lines(self) -> list[str]:
        if self._lines is None:
            pattern = _NG_LINE_BREAK if self.breaks == "ng" else _LINE_BREAK
            self._lines = pattern.split(self.text)
        return self._lines

    def line_text(self, line: int) -> str:
        lines = self.lines()
        return lines[line - 1] if 1 <= line <= len(lines) else ""

    def locate(self, path: SpecPath, part: str = "value") -> Span | None:
        """The span of `path`, else of its nearest ancestor that has one.

        A missing key has no span of its own, so it points at the mapping that should hold it;
        for an ancestor the key is preferred, because a block mapping's value starts on the line
        after its key and the key names what is incomplete.
        """
        path = tuple(path)
        if part == "key" and path in self.keys:
            return self.keys[path]
        if path in self.values:
            return self.values[path]
        for cut in range(len(path) - 1, -1, -1):
            ancestor = path[:cut]
            span = self.keys.get(ancestor) or self.values.get(ancestor)
            if span is not None:
                return span
        return None

    def override_for(self, path: SpecPath) -> tuple[int, str] | None:
        """The override that set `path` or one of its ancestors (the innermost), if any.

        An override beats the file's spans: the text under an overridden path is no longer
        what the program sees.
        """
        path = tuple(path)
        for cut in range(len(path), -1, -1):
            found = self.overrides.get(path[:cut])
            if found is not None:
                return found
        return None

    def pin(self, span: Span) -> SpecPath:
        """A path that stands for `span` itself, for problems with no document path."""
        path: SpecPath = (POSITION_SEGMENT, len(self.values))
        self.values[path] = span
        return path


def is_document_path(path: SpecPath) -> bool:
    return not (path and path[0] in (POSITION_SEGMENT, OVERRIDE_SEGMENT))


# ------------------------------------------------------------------------------ formatting


def _label(d: Diagnostic) -> str:
    return f"{d.severity}[{d.code}]" if d.code else d.severity


def _trailer(d: Diagnostic, indent: int) -> list[str]:
    pad = " " * indent
    lines = [f"{pad}= help: {printable(d.hint)}"] if d.hint else []
    lines += [f"{pad}= note: {printable(note)}" for note in d.notes]
    return lines


def _window(text: str, span: Span) -> tuple[str, int, int]:
    """The part of a long line around the span (a one-line JSON spec is valid YAML)."""
    if len(text) <= _MAX_SHOWN:
        return text, span.col, span.end_col
    start = max(0, span.col - 1 - _MAX_SHOWN // 3)
    end = start + _MAX_SHOWN
    prefix = "..." if start > 0 else ""
    shown = prefix + text[start:end] + ("..." if end < len(text) else "")
    col = span.col - start + len(prefix)
    end_col = min(span.end_col, end + 1) - start + len(prefix)
    return shown, col, end_col


def _snippet(source: SourceFile, span: Span) -> tuple[list[str], int]:
    text, col, end_col = _window(source.line_text(span.line), span)
    width = len(str(span.line))
    gutter = " " * (width + 1)
    # The line is shown with its unsafe characters escaped (a spec may carry ESC or a bidi
    # override); the carets are laid out under the escaped text, so they still line up.
    before = printable(text[: col - 1])
    underlined = printable(text[col - 1 : end_col - 1])
    shown = before + underlined + printable(text[end_col - 1 :])
    # Keep tabs in the caret line's indentation so the carets line up under a tabbed line.
    lead = "".join(ch if ch == "\t" else " " for ch in before)
    lead += " " * max(0, col - 1 - len(text))
    past_end = (end_col - col) - len(text[col - 1 : end_col - 1])  # a span beyond the text
    carets = "^" * max(1, len(underlined) + past_end)
    lines = [f"{gutter}|", f"{span.line} | {shown}".rstrip(), f"{gutter}| {lead}{carets}"]
    return lines, width + 1


def format_diagnostic(d: Diagnostic, source: SourceFile | None) -> str:
    """One diagnostic as text: position, message, the source line underlined, help and notes."""
    override = source.override_for(d.path) if source is not None else None
    if override is not None:
        number, text = override
        head = f"override #{number} '{printable(text)}': {_label(d)}: {printable(d.message)}"
        return "\n".join([head, *_trailer(d, 2)])
    span = source.locate(d.path, d.part) if source is not None else None
    message = printable(d.message)
    if source is None or span is None:
        prefix = f"{printable(source.filename)}: " if source is not None else ""
        return "\n".join([f"{prefix}{_label(d)}: {message}", *_trailer(d, 2)])
    head = f"{printable(source.filename)}:{span.line}:{span.col}: {_label(d)}: {message}"
    snippet, indent = _snippet(source, span)
    return "\n".join([head, *snippet, *_trailer(d, indent)])


def _order(d: Diagnostic, source: SourceFile | None) -> tuple[int, int, int]:
    # File positions first in reading order, then overrides in the order typed, then the rest.
    if source is None:
        return (2, 0, 0)
    override = source.override_for(d.path)
    if override is not None:
        return (1, override[0], 0)
    span = source.locate(d.path, d.part)
    return (0, span.line, span.col) if span is not None else (2, 0, 0)


def _unique_sorted(
    diags: Iterable[Diagnostic], source: SourceFile | None
) -> list[tuple[Diagnostic, str]]:
    seen: set[str] = set()
    unique: list[tuple[Diagnostic, str]] = []
    for d in sorted(diags, key=lambda d: _order(d, source)):
        text = format_diagnostic(d, source)
        if text not in seen:
            seen.add(text)
            unique.append((d, text))
    return unique


def format_diagnostics(diags: Iterable[Diagnostic], source: SourceFile | None,
                       noun: str = "error") -> str:
    """All diagnostics in reading order, duplicates dropped, then ``N errors`` (or warnings)."""
    unique = _unique_sorted(diags, source)
    count = len(unique)
    summary = f"{count} {noun}{'' if count == 1 else 's'}"
    return "\n\n".join([text for _, text in unique] + [summary])


def _as_json(d: Diagnostic, source: SourceFile | None) -> dict[str, Any]:
    override = source.override_for(d.path) if source is not None else None
    span = source.locate(d.path, d.part) if source is not None and override is None else None
    return {
        "file": source.filename if source is not None and override is None else None,
        "line": span.line if span else None,
        "col": span.col if span else None,
        "end_col": span.end_col if span else None,
        "severity": d.severity,
        "code": d.code,
        "message": d.message,
        "hint": d.hint,
        "notes": list(d.notes),
        "path": list(d.path) if is_document_path(d.path) else None,
        "override": {"number": override[0], "text": override[1]} if override else None,
    }


def diagnostics_as_json(
    diags: Iterable[Diagnostic], source: SourceFile | None
) -> list[dict[str, Any]]:
    """The diagnostics as plain dicts (for ``--format json``), in the order they are printed."""
    return [_as_json(d, source) for d, _ in _unique_sorted(diags, source)]
