"""The file side of ``nestgraph fmt``: which file to read and write, checks, atomic writes.

Nothing is written until every file has been read and formatted, so a file with an error
leaves all of them as they were. A write goes to a temporary file beside the target that is
then renamed over it: an interrupted ``fmt`` never leaves half a spec.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nestgraph.errors import UsageProblem
from nestgraph.fmt.format import FORMS, form_of, read_text, write_text
from nestgraph.fsutil import atomic_write_text


@dataclass(frozen=True)
class FormatRequest:
    to: str | None = None  # None: each file in its own form, in place
    check: bool = False
    out: str | None = None  # with `to`: a path, or "-" for stdout
    force: bool = False


def _read(path: Path) -> str:
    from nestgraph.spec import _read as read_spec_text

    if not path.is_file():
        raise UsageProblem(f"no such file '{path}'")
    return read_spec_text(path, str(path))


def _target(path: Path, request: FormatRequest) -> Path | None:
    """Where the formatted text goes; None for stdout."""
    if request.to is None:
        return path
    if request.out == "-":
        return None
    if request.out is not None:
        return Path(request.out)
    return path.with_suffix(FORMS[request.to])


def _diff(old: str, new: str, name: str) -> str:
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 f"{name} (now)", f"{name} (formatted)")
    return "".join(lines)


def format_files(files: list[Path], request: FormatRequest, say: Callable[[str], None]) -> bool:
    """Format or convert `files`; False when `--check` found a file that would change."""
    planned: list[tuple[Path, Path | None, str, str | None]] = []
    for path in files:
        text = _read(path)
        doc = read_text(text, str(path), form_of(path))
        new = write_text(doc, request.to or doc.form)
        target = _target(path, request)
        current = target.read_text("utf-8") if target is not None and target.is_file() else None
        if (request.to is not None and target is not None and current is not None
                and current != new and not request.force and not request.check):
            raise UsageProblem(f"'{target}' exists and differs from the conversion of '{path}'",
                               "pass --force to replace it, or -o to write elsewhere")
        planned.append((path, target, new, current))
    clean = True
    for _path, target, new, current in planned:
        if target is None:
            sys.stdout.write(new)
        elif request.check:
            if current != new:
                clean = False
                say(f"would {'reformat' if request.to is None else 'write'} {target}")
                if current is not None:
                    say(_diff(current, new, str(target)).rstrip("\n"))
        elif current == new:
            say(f"{target} unchanged")
        else:
            atomic_write_text(target, new)
            say(f"wrote {target}" if request.to else f"formatted {target}")
    return clean
