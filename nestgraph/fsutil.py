"""Small file-system helpers for writes that must survive a crash at any moment."""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path


def fsync_file(path: Path) -> None:
    """Flush a finished file's contents to disk before it is renamed into place."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable; a no-op where directories cannot be opened."""
    if os.name == "nt":  # Windows has no directory file descriptors to flush
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse to fsync a directory; the rename still happened
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8, ``\\n`` line ends), atomically (`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so readers see the old file or the new one, never a mix.

    The temporary file lives in the same folder because `os.replace` is only atomic within
    one file system.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


# Errors that say the machine cannot take the write, not that nestgraph made a mistake.
_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def environment_problem(err: OSError, where: Path | str | None = None):
    """The EnvironmentProblem for a failed write, or None if `err` is not one of that kind."""
    from nestgraph.errors import EnvironmentProblem
    from nestgraph.escape import printable

    reason = _ENVIRONMENT_ERRNOS.get(err.errno)
    if reason is None and not isinstance(err, PermissionError):
        return None
    reason = reason or "permission denied"
    path = err.filename or where or "the run folder"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some space there, or write runs elsewhere with --out DIR"
    else:
        hint = "make that folder writable, or write runs elsewhere with --out DIR"
    return EnvironmentProblem(f"cannot write '{printable(str(path))}': {reason}", hint)


@contextmanager
def environment_errors(where: Path | str | None = None):
    """Turn a full disk, a read-only or forbidden folder into an EnvironmentProblem."""
    try:
        yield
    except OSError as err:
        problem = environment_problem(err, where)
        if problem is None:
            raise
        raise problem from err
