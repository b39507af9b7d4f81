"""`printable` neutralises what a terminal would obey, and leaves ordinary text alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nestgraph.escape import printable


@pytest.mark.parametrize("raw, shown", [
    ("\x1b[2J", "\\x1b[2J"),            # clear screen
    ("a\u202eb", "a\\u202eb"),          # right-to-left override
    ("a\u2066b\u2069", "a\\u2066b\\u2069"),  # bidi isolates
    ("x\x00y\x7f", "x\\x00y\\x7f"),
    ("\x9b31m", "\\x9b31m"),            # C1 control sequence introducer
    ("line\nbreak", "line\\x0abreak"),
    ("a\ud800b", "a\\ud800b"),          # a lone surrogate
])
def test_unsafe_characters_are_escaped(raw, shown):
    assert printable(raw) == shown
    assert printable(raw).isprintable()


@pytest.mark.parametrize("text", ["cms_fast", "Ünïcödé names", "日本語", "a b\tc"[:3], ""])
def test_ordinary_text_is_unchanged(text):
    assert printable(text) == text


def test_salvage_imports_in_a_fresh_interpreter():
    # It once imported the compiler from inside the spec package: a circular import.
    for module in ("nestgraph.compiler.salvage", "nestgraph.spec", "nestgraph.compiler"):
        done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
