"""Comments of a spec, attached to the entries they describe, so a formatter can keep them.

Both forms write comments as ``# ...`` to the end of the line. A comment on a line of its own
belongs to the entry that follows it (*leading*); one after code belongs to the first entry
that starts on its line (*trailing*). Entries are named by their document path, so a comment
follows its entry from YAML to the DSL and back whatever the layout.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import yaml

from nestgraph.spec.source import SourceFile, SpecPath, is_document_path


@dataclass(frozen=True)
class Comment:
    line: int
    col: int
    text: str  # without the '#' and the space after it
    own_line: bool  # nothing but spaces before it on its line


@dataclass
class Attached:
    """Comments by the path of the entry they belong to."""

    leading: dict[SpecPath, list[str]] = field(default_factory=lambda: defaultdict(list))
    trailing: dict[SpecPath, list[str]] = field(default_factory=lambda: defaultdict(list))
    footer: list[str] = field(default_factory=list)

    def inside(self, path: SpecPath, besides: SpecPath | None = None) -> bool:
        """Whether an entry strictly below `path` (other than `besides`) carries a comment:
        then it cannot be written inline."""
        n = len(path)
        return any(len(p) > n and p[:n] == path and p != besides and texts
                   for table in (self.leading, self.trailing) for p, texts in table.items())

    def on(self, path: SpecPath) -> bool:
        return bool(self.leading.get(path) or self.trailing.get(path))


def comment_text(raw: str) -> str:
    """A comment's text: after the '#' and one space, so indented comment text keeps its
    indentation."""
    text = raw[1:].rstrip()
    return text[1:] if text.startswith(" ") else text


def yaml_comments(text: str) -> list[Comment]:
    """The comments of a YAML document: a '#' outside every scalar, after a space or at a
    line's start (the YAML rule), to the end of its line."""
    scalars: list[tuple[int, int]] = []
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, yaml.ScalarToken):
            scalars.append((token.start_mark.index, token.end_mark.index))
    found: list[Comment] = []
    line_start, line_no, inside = 0, 1, 0
    for line in text.splitlines(keepends=True):
        i = line.find("#")
        while i >= 0:
            at = line_start + i
            while inside < len(scalars) and scalars[inside][1] <= at:
                inside += 1
            in_scalar = inside < len(scalars) and scalars[inside][0] <= at
            if not in_scalar and (i == 0 or line[i - 1] in " \t"):
                body = line[i:].rstrip("\r\n")
                found.append(Comment(line_no, i + 1, comment_text(body), not line[:i].strip()))
                break
            i = line.find("#", i + 1)
        line_start += len(line)
        line_no += 1
    return found


def _entry_starts(source: SourceFile) -> list[tuple[int, int, int, SpecPath]]:
    """(line, column, depth, path) where each entry of the document starts, in reading order."""
    starts = {}
    for path, span in source.values.items():
        if path and is_document_path(path):
            starts[path] = span
    for path, span in source.keys.items():
        if is_document_path(path):
            starts[path] = span  # an entry with a key starts at its key
    for path in source.gathered:
        starts.pop(path, None)
    return sorted((s.line, s.col, len(p), p) for p, s in starts.items())


def attach(comments: list[Comment], source: SourceFile) -> Attached:
    """Each comment given to the entry it describes."""
    result = Attached()
    starts = _entry_starts(source)
    for c in comments:
        if c.own_line:
            after = [s for s in starts if s[0] > c.line]
            if after:
                result.leading[after[0][3]].append(c.text)
            else:
                result.footer.append(c.text)
            continue
        same = [s for s in starts if s[0] == c.line and s[1] < c.col]
        before = [s for s in starts if s[0] < c.line]
        if same:
            result.trailing[same[0][3]].append(c.text)
        elif before:
            result.trailing[before[-1][3]].append(c.text)
        else:
            result.footer.append(c.text)
    return result
