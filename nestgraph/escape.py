"""Show user-given text on a terminal without letting it act on the terminal.

A spec is untrusted input: a name or a string in it may carry ESC sequences, other control
characters or bidirectional overrides, which a terminal would obey (move the cursor, recolour,
reorder what the user reads). Every user string that nestgraph echoes (diagnostics, tables,
logs) goes through `printable`, which writes such characters as Python escapes, as the generated
program already does for strings it embeds.
"""

from __future__ import annotations

import unicodedata

# Unicode categories a terminal may act on or that render as nothing: controls (Cc, including
# ESC, DEL and the C1 range), format characters (Cf: bidi overrides and isolates, zero-width
# joiners), surrogates (Cs), private use (Co), unassigned (Cn), line and paragraph separators.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """`text` with every character a terminal could act on written as an escape (``\\x1b``)."""
    if text.isprintable():  # the common case, checked in C
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE else ch for ch in text)
