"""A spec's plain data written in the `.ng` language, canonically (``nestgraph fmt``).

One layout for every spec: the header statements, the model, the modules, the levels fastest
first as written, then train and data. A statement, a clause or a value stays on one line when
it fits in `WIDTH` columns and nothing inside it carries a comment; otherwise it is broken one
entry per line. Reading the output back gives the same data (tests/spec/test_roundtrip.py).
"""

from __future__ import annotations

import re
from typing import Any

from nestgraph.fmt.emit import BLANK, WIDTH, Line, Unwritable, number, quoted, render
from nestgraph.spec.comments import Attached
from nestgraph.spec.source import SpecPath

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_PERIOD = re.compile(r"(\d+) (tokens?|steps?)")
_FLOW = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?: of ([A-Za-z_][A-Za-z0-9_]*))?")

STATEMENTS = ("nestgraph", "spec", "about", "model", "module", "level", "train", "data")
# Words that start something where a key could stand, so no key may be spelled like them.
_NOT_A_LEVEL_KEY = {*STATEMENTS, "every", "on", "minimise", "minimize"}
_NOT_A_VALUE = {"true", "false", "null"}
_LEVEL_CLAUSES = ("owns", "objective", "rule", "lifetime", "meta")
def _name(value: Any, path: SpecPath, what: str) -> str:
    if isinstance(value, str) and _NAME.fullmatch(value):
        return value
    raise Unwritable(path, f"{what} must be a name (letters, digits, '_'), not {value!r}")


class _Writer:
    def __init__(self, notes: Attached) -> None:
        self.notes = notes

    # ------------------------------------------------------------------------ values inline

    def scalar(self, value: Any, path: SpecPath) -> str:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return number(value, path)
        if isinstance(value, str):
            bare = _WORD.fullmatch(value) and value not in _NOT_A_VALUE
            return value if bare else quoted(value)
        raise Unwritable(path, f"a value of type {type(value).__name__} cannot be written")

    def callable(self, value: dict[str, Any]) -> bool:
        kind = value.get("type")
        return (isinstance(kind, str) and bool(_NAME.fullmatch(kind))
                and all(_NAME.fullmatch(k) for k in value if k != "type"))

    def key(self, key: str) -> str:
        return key if _NAME.fullmatch(key) and key not in _NOT_A_VALUE else quoted(key)

    def inline(self, value: Any, path: SpecPath) -> str:
        if isinstance(value, list):
            items = [self.inline(v, (*path, i)) for i, v in enumerate(value)]
            return "[" + ", ".join(items) + "]"
        if isinstance(value, dict):
            if self.callable(value):
                args = [f"{k}={self.inline(v, (*path, k))}" for k, v in value.items()
                        if k != "type"]
                return f"{value['type']}(" + ", ".join(args) + ")"
            entries = [f"{self.key(k)}: {self.inline(v, (*path, k))}" for k, v in value.items()]
            return "{" + ", ".join(entries) + "}"
        return self.scalar(value, path)

    # ------------------------------------------------------------------------ values in lines

    def value(self, value: Any, path: SpecPath, indent: int, prefix: str, suffix: str = "",
              paths: tuple[SpecPath, ...] = ()) -> list[Line]:
        """`prefix` + the value + `suffix` on one line if it fits, else one entry per line."""
        here = [*paths, path]
        text = prefix + self.inline(value, path) + suffix
        containers = isinstance(value, (dict, list)) and value
        call = isinstance(value, dict) and self.callable(value)
        if call:
            here.append((*path, "type"))  # written on the call's first line in either layout
        quiet = not self.notes.inside(path, besides=(*path, "type") if call else None)
        if not containers or (indent + len(text) <= WIDTH and quiet):
            return [Line(indent, text, here)]
        if isinstance(value, list):
            inner = [self.value(v, (*path, i), indent + 4, "", ",") for i, v in enumerate(value)]
            opening, closing = "[", "]"
        elif call:
            inner = [self.value(v, (*path, k), indent + 4, f"{k}=", ",")
                     for k, v in value.items() if k != "type"]
            opening, closing = f"{value['type']}(", ")"
        else:
            inner = [self.value(v, (*path, k), indent + 4, f"{self.key(k)}: ", ",")
                     for k, v in value.items()]
            opening, closing = "{", "}"
        lines = [Line(indent, prefix + opening, here)]
        lines += [line for entry in inner for line in entry]
        return [*lines, Line(indent, closing + suffix)]

    # ---------------------------------------------------------------------------- statements

    def pairs(self, head: str, entries: list[tuple[SpecPath, str, Any]],
              head_paths: list[SpecPath]) -> list[Line]:
        """``head: k v, k v`` on one line, or the head then one entry per line."""
        inline = ", ".join(f"{k} {self.inline(v, p)}" for p, k, v in entries)
        one = f"{head} {inline}" if entries else head
        quiet = not any(self.notes.on(p) or self.notes.inside(p) for p, _, _ in entries)
        if len(one) <= WIDTH and quiet:
            return [Line(0, one, [*head_paths, *(p for p, _, _ in entries)])]
        lines = [Line(0, head, head_paths)]
        for p, k, v in entries:
            lines += self.value(v, p, 4, f"{k} ")
        return lines

    def section(self, key: str, value: Any) -> list[Line]:
        if not isinstance(value, dict):
            raise Unwritable((key,), f"'{key}' must be a mapping of settings to be written "
                                     "as a .ng section")
        entries = []
        for k, v in value.items():
            if not _NAME.fullmatch(k) or k in STATEMENTS or k in _NOT_A_VALUE:
                raise Unwritable((key, k), f"'{k}' cannot be written as a key in a .ng file")
            entries.append(((key, k), k, v))
        return self.pairs(f"{key}:", entries, [(key,)])

    def module(self, name: str, value: Any) -> list[Line]:
        path = ("modules", name)
        head = f"module {_name(name, path, 'a module name')} = "
        return self.value(value, path, 0, head)

    def level(self, index: int, level: Any) -> list[Line]:
        path: SpecPath = ("levels", index)
        if not isinstance(level, dict):
            raise Unwritable(path, "a level must be a mapping to be written as a .ng level")
        head = f"level {_name(level.get('name'), (*path, 'name'), 'a level name')}"
        head_paths = [path, (*path, "name")]
        if "every" in level:
            head += " every " + self.period(level["every"], (*path, "every"))
            head_paths.append((*path, "every"))
        if "context" in level:
            head += " on " + self.flow(level["context"], (*path, "context"))
            head_paths.append((*path, "context"))
        clauses = self.clauses(level, path)
        inline = ", ".join(self.clause_inline(c, level, path) for c in clauses)
        quiet = not any(self.notes.on((*path, k)) or self.notes.inside((*path, k))
                        for c in clauses for k in c)
        one = f"{head}: {inline}"
        if len(one) <= WIDTH and quiet:
            return [Line(0, one, head_paths + [(*path, k) for c in clauses for k in c])]
        lines = [Line(0, head + ":", head_paths)]
        for c in clauses:
            lines += self.clause_lines(c, level, path)
        return lines

    def clauses(self, level: dict[str, Any], path: SpecPath) -> list[tuple[str, ...]]:
        """The level's keys as clauses, in order: ``minimise ... by ...`` takes two."""
        rest = [k for k in level if k not in ("name", "every", "context")]
        ordered = [k for k in _LEVEL_CLAUSES if k in rest] + [
            k for k in rest if k not in _LEVEL_CLAUSES]
        clauses: list[tuple[str, ...]] = []
        for k in ordered:
            if k == "rule" and "objective" in level:
                continue
            if k == "objective" and "rule" in level:
                clauses.append(("objective", "rule"))
                continue
            if not _NAME.fullmatch(k) or k in _NOT_A_LEVEL_KEY or k in _NOT_A_VALUE:
                raise Unwritable((*path, k), f"'{k}' cannot be written as a level clause")
            clauses.append((k,))
        return clauses

    def clause_inline(self, clause: tuple[str, ...], level: dict[str, Any],
                      level_path: SpecPath) -> str:
        if clause == ("objective", "rule"):
            objective = self.inline(level["objective"], (*level_path, "objective"))
            rule = self.inline(level["rule"], (*level_path, "rule"))
            return f"minimise {objective} by {rule}"
        (k,) = clause
        return f"{k} {self.inline(level[k], (*level_path, k))}"

    def clause_lines(self, clause: tuple[str, ...], level: dict[str, Any],
                     level_path: SpecPath) -> list[Line]:
        if clause != ("objective", "rule"):
            (k,) = clause
            return self.value(level[k], (*level_path, k), 4, f"{k} ")
        objective, rule = (*level_path, "objective"), (*level_path, "rule")
        one = self.clause_inline(clause, level, level_path)
        noisy = self.notes.on(rule) or self.notes.inside(rule) or self.notes.inside(objective)
        if 4 + len(one) <= WIDTH and not noisy:
            return [Line(4, one, [objective, rule])]
        return (self.value(level["objective"], objective, 4, "minimise ")
                + self.value(level["rule"], rule, 8, "by "))

    def period(self, value: Any, path: SpecPath) -> str:
        if isinstance(value, str):
            return value if _PERIOD.fullmatch(value) else quoted(value)
        raise Unwritable(path, f"a period is written as '16 tokens' or '1 step', not {value!r}")

    def flow(self, value: Any, path: SpecPath) -> str:
        if isinstance(value, str):
            return value if _FLOW.fullmatch(value) else quoted(value)
        raise Unwritable(path, f"a context flow is written as 'tokens' or 'gradients of "
                               f"LEVEL', not {value!r}")

    # ------------------------------------------------------------------------------ document

    def statements(self, data: dict[str, Any]) -> list[tuple[str, list[Line]]]:
        """(kind, lines) for each statement, in the canonical order."""
        for key in data:
            if key not in ("nestgraph", "name", "about", "model", "modules", "levels", "train",
                           "data"):
                raise Unwritable((key,), f"the .ng language has no statement for '{key}'")
        out: list[tuple[str, list[Line]]] = []
        if "nestgraph" in data:
            version = data["nestgraph"]
            if isinstance(version, bool) or not isinstance(version, (int, float)):
                raise Unwritable(("nestgraph",), "the spec format version must be a number")
            out.append(("head", [Line(0, f"nestgraph {number(version, ('nestgraph',))}",
                                      [("nestgraph",)])]))
        if "name" in data:
            name = _name(data["name"], ("name",), "the spec's name")
            out.append(("head", [Line(0, f"spec {name}", [("name",)])]))
        if "about" in data:
            if not isinstance(data["about"], str):
                raise Unwritable(("about",), "'about' must be text")
            out.append(("head", [Line(0, f"about {quoted(data['about'])}", [("about",)])]))
        if "model" in data:
            out.append(("section", self.section("model", data["model"])))
        out += [("module", lines) for lines in self.gathered(data, "modules")]
        out += [("level", lines) for lines in self.gathered(data, "levels")]
        out += [("section", self.section(k, data[k])) for k in ("train", "data") if k in data]
        return out

    def gathered(self, data: dict[str, Any], key: str) -> list[list[Line]]:
        """One statement per module or level; the first also stands for the whole list."""
        if key not in data:
            return []
        value, kind = data[key], dict if key == "modules" else list
        if not isinstance(value, kind) or not value:
            what = "mapping of modules" if kind is dict else "list of levels"
            raise Unwritable((key,), f"'{key}' must be a non-empty {what}")
        if kind is dict:
            found = [self.module(name, v) for name, v in value.items()]
        else:
            found = [self.level(i, v) for i, v in enumerate(value)]
        found[0][0].paths.insert(0, (key,))
        return found


def _joined(statements: list[tuple[str, list[Line]]]) -> list[Line | None]:
    """Statements one after another; a blank line between any two, except between one-line
    statements of the same kind (the header, a run of short modules or levels)."""
    lines: list[Line | None] = []
    previous: tuple[str, int] | None = None
    for kind, body in statements:
        if previous is not None and not (previous == (kind, 1) and len(body) == 1):
            lines.append(BLANK)
        lines += body
        previous = (kind, len(body))
    return lines


def to_ng(data: dict[str, Any], notes: Attached) -> str:
    """The spec as canonical `.ng` text, comments included."""
    return render(_joined(_Writer(notes).statements(data)), notes)
