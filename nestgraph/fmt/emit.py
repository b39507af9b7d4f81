"""What the two spec writers (`emit_yaml`, `emit_ng`) share: lines that know which entries start
on them, comments put back around those lines, and numbers written one way.

A writer produces `Line`s. Each line lists the paths of the entries that start on it; when the
text is put together, the comments attached to those paths (`comments.Attached`) go above the
line (leading) or after it (trailing, aligned across a run of commented lines).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from nestgraph.errors import Diagnostic, SpecError
from nestgraph.spec.comments import Attached
from nestgraph.spec.source import SourceFile, SpecPath

WIDTH = 100  # the longest line a writer puts a value on inline
INDENT = "    "


@dataclass
class Line:
    indent: int  # in spaces
    text: str
    paths: list[SpecPath] = field(default_factory=list)

    def width(self) -> int:
        return self.indent + len(self.text)


BLANK = None  # a blank line between statements or sections


class Unwritable(Exception):
    """An entry the target form has no way to write (only invalid specs have one)."""

    def __init__(self, path: SpecPath, message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message

    def as_error(self, source: SourceFile | None, target: str) -> SpecError:
        hint = f"fix the spec (nestgraph validate) before writing it as {target}"
        return SpecError([Diagnostic(self.message, self.path, hint=hint, code="E-FMT")], source)


# Characters that may not stand raw inside a quoted string in either form: YAML readers
# refuse control characters and non-characters, and read U+0085, U+2028, U+2029 as line breaks
# (so does this project's source map). Written as \u escapes, which both forms decode.
_RAW_REFUSED = re.compile("[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd"
                          "\U00010000-\U0010ffff]")


def quoted(text: str) -> str:
    """`text` as a double-quoted string that YAML and the .ng language both read back as is."""
    return _RAW_REFUSED.sub(lambda m: f"\\u{ord(m.group()):04x}",
                            json.dumps(text, ensure_ascii=False))


def number(value: float | int, path: SpecPath) -> str:
    """An int as digits; a float as Python's shortest round-trip form, exponent unpadded."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        raise Unwritable(path, f"{value} cannot be written here")
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


# Characters a comment cannot carry into every form: YAML reads U+0085, U+2028 and U+2029 as
# line breaks (the rest of the comment would become code) and refuses control characters.
# They are written as visible escapes instead.
_UNSAFE_IN_COMMENTS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029"
                                 "\ufffe\uffff\r]")


def _comment(text: str) -> str:
    text = _UNSAFE_IN_COMMENTS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return f"# {text}" if text else "#"


def render(lines: list[Line | None], notes: Attached) -> str:
    """The lines as text, with every attached comment put back."""
    out: list[tuple[str, str | None]] = []  # (code, trailing comment)
    placed: set[SpecPath] = set()
    for line in lines:
        if line is BLANK:
            if out and out[-1][0] != "":
                out.append(("", None))
            continue
        pad = " " * line.indent
        trailing = []
        for path in line.paths:
            if path in placed:
                continue
            placed.add(path)
            out += [(pad + _comment(t), None) for t in notes.leading.get(path, [])]
            trailing += notes.trailing.get(path, [])
        comment = "; ".join(trailing) if trailing else None
        out.append((pad + line.text, comment))
    while out and out[-1][0] == "":
        out.pop()
    if notes.footer:
        out.append(("", None))
        out += [(_comment(t), None) for t in notes.footer]
    return "\n".join(_aligned(out)) + "\n"


def _indent(code: str) -> int:
    return len(code) - len(code.lstrip(" "))


def _aligned(out: list[tuple[str, str | None]]) -> list[str]:
    """Trailing comments of consecutive lines with the same indentation start in one column,
    two spaces after the longest code of the run."""
    result: list[str] = []
    i = 0
    while i < len(out):
        j = i
        while (j < len(out) and out[j][1] is not None
               and _indent(out[j][0]) == _indent(out[i][0])):
            j += 1
        if j == i:
            result.append(out[i][0])
            i += 1
            continue
        column = max(len(code) for code, _ in out[i:j]) + 2
        result += [code.ljust(column) + _comment(c) for code, c in out[i:j]]
        i = j
    return result
