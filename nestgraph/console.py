"""One stream for log and status lines: standard error, so standard output is the output."""

from __future__ import annotations

import sys


def status(line: str) -> None:
    """A log or status line: standard error, so that standard output is the command's output."""
    print(line, file=sys.stderr, flush=True)
