"""Reading a corpus's bytes: the Python standard library's own sources (the default corpus
every install has), a file, or a folder of text files, refusing what is not text."""

from __future__ import annotations

import os
import stat
import sysconfig
from pathlib import Path

from nestgraph.errors import TrainingError
from nestgraph.escape import printable

# Bounds of a folder walk: entries looked at (files and folders), and folder depth.
MAX_FILES = 100_000


MAX_DEPTH = 64


# How much of a file is inspected to decide whether it is text (the same rule git uses).
_SNIFF_BYTES = 8192


# Folders of the standard library that are not ordinary library source, or not the stdlib.
_STDLIB_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__"}
)


DATA_HINT = (
    "pass --data with a text file or a folder of text files, "
    "or leave it out to use the built-in Python standard library corpus"
)


class DataError(TrainingError):
    """The training data cannot be used: missing, unreadable, empty or too small."""

    hint: str | None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint or "")
        self.hint = hint  # None when there is nothing useful to suggest


def read_stdlib(max_bytes: int | None) -> tuple[bytes, int, str]:
    """The running interpreter's own library sources: present on every install, no download."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_files(root) if root.is_dir() else []
    chunks: list[bytes] = []
    total = 0
    for file in files:
        try:
            content = file.read_bytes()
        except OSError:
            continue  # an unreadable library file is not the user's problem; skip it
        if not content:
            continue
        chunks.append(content)
        total += len(content) + 1
        if max_bytes is not None and total >= max_bytes:
            break  # enough bytes; reading the rest would only be thrown away
    if not chunks:
        raise DataError(
            f"this Python installation has no standard library sources under '{root}'",
            "pass --data with a text file or a folder of text files",
        )
    return b"\n".join(chunks), len(chunks), f"python stdlib ({len(chunks)} files)"


def stdlib_files(root: Path) -> list[Path]:
    """`.py` files under `root` in sorted relative-path order, skipping tests and packages."""
    found: list[tuple[str, Path]] = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _STDLIB_SKIP_DIRS]
        for name in filenames:
            if name.endswith(".py"):
                file = Path(folder) / name
                found.append((file.relative_to(root).as_posix(), file))
    found.sort()
    return [file for _, file in found]


def read_user_path(path: Path, max_bytes: int | None) -> tuple[bytes, int, str]:
    """A file is taken as it is; a folder contributes each of its text files in order."""
    source = str(path)
    kind = _kind(path)
    if kind == "missing":
        raise DataError(f"data path '{printable(source)}' does not exist", DATA_HINT)
    if kind == "folder":
        chunks = _read_text_files(path, max_bytes)
    elif kind == "file":
        content = _read_file(path, max_bytes)
        chunks = [content] if content else []
    else:
        raise DataError(f"data path '{printable(source)}' is a {kind}, not a regular file or "
                        "folder: reading it could wait forever or never end", DATA_HINT)
    if not chunks:
        raise DataError(
            f"data path '{printable(source)}' contains no text",
            "folders are read for non-empty text files; binary and hidden files are skipped",
        )
    return b"\n".join(chunks), len(chunks), source


def _kind(path: Path) -> str:
    """``file``, ``folder``, ``missing``, or what else it is (a FIFO blocks a reader forever)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        raise DataError(f"cannot look at data path '{printable(str(path))}': "
                        f"{exc.strerror or exc}", DATA_HINT) from exc
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _read_text_files(root: Path, max_bytes: int | None) -> list[bytes]:
    """Text files under `root` until `max_bytes` are read or `MAX_FILES` files looked at.

    Unreadable files and anything that is not a regular file are skipped; if nothing could be
    read and some file was unreadable, that is the error reported.
    """
    chunks: list[bytes] = []
    total = 0
    unreadable: DataError | None = None
    for file in _folder_files(root):
        try:
            content = _read_file(file, None if max_bytes is None else max_bytes - total)
        except DataError as err:
            unreadable = unreadable or err
            continue
        if not content or b"\x00" in content[:_SNIFF_BYTES]:
            continue  # empty or binary: contributes no text
        chunks.append(content)
        total += len(content) + 1
        if max_bytes is not None and total >= max_bytes:
            break
    if not chunks and unreadable is not None:
        raise unreadable
    return chunks


def _folder_files(root: Path, limit: int | None = None):
    """Non-hidden regular files under `root`, in sorted relative-path order, lazily.

    A folder's entries are visited sorted by name, a subfolder's name followed by ``/``:
    depth first, that is exactly the order of the sorted relative paths, without listing the
    whole tree first (a folder such as ``/`` would take forever). The walk stops after `limit`
    entries (default `MAX_FILES`, files and folders alike) or `MAX_DEPTH` levels down;
    symbolic links to folders are not followed, unreadable folders are skipped.
    """
    seen = [0]
    yield from _walk(root, seen, MAX_FILES if limit is None else limit, 0)


def _walk(folder: Path, seen: list[int], limit: int, depth: int):
    try:
        with os.scandir(folder) as listing:
            entries = [e for e in listing if not e.name.startswith(".")]
    except OSError:
        return  # an unreadable folder contributes nothing
    keyed = []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                keyed.append((entry.name + "/", True, Path(entry.path)))
            elif stat.S_ISREG(os.stat(entry.path).st_mode):  # follows a link to a file
                keyed.append((entry.name, False, Path(entry.path)))
        except OSError:
            continue  # a dangling link, or an entry gone meanwhile
    for _, is_dir, path in sorted(keyed):
        seen[0] += 1
        if seen[0] > limit:
            return
        if not is_dir:
            yield path
        elif depth < MAX_DEPTH:
            yield from _walk(path, seen, limit, depth + 1)


def _read_file(path: Path, limit: int | None) -> bytes:
    """Read up to `limit` bytes, but always enough of the head to tell text from binary."""
    size = None if limit is None else max(limit, _SNIFF_BYTES)
    try:
        with path.open("rb") as handle:
            return handle.read() if size is None else handle.read(size)
    except OSError as exc:
        raise DataError(
            f"cannot read data file '{path}': {exc.strerror or exc}",
            "check the file's permissions, or point --data somewhere else",
        ) from exc
