"""Plain YAML scalars by the YAML 1.2 core schema (so ``1e-3`` is a float and ``no`` the string
"no"), and the words used for values and tags in messages."""

from __future__ import annotations

import math
import re
from typing import Any

# Longest number literal read: Python refuses to convert decimal integers of more than 4,300
# digits, and no spec needs more than a few dozen characters for a number.
MAX_NUMBER_LENGTH = 100


STD_TAG = "tag:yaml.org,2002:"


_SCALAR_TAGS = {STD_TAG + name for name in ("str", "int", "float", "bool", "null")}


ALLOWED_TAGS = {
    "scalar": _SCALAR_TAGS | {"!"},
    "mapping": {STD_TAG + "map", "!"},
    "sequence": {STD_TAG + "seq", "!"},
}


# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), plus '_' between
# digits as in Python (4_000_000), which YAML 1.1 allowed too.
_DIGITS = r"[0-9](?:_?[0-9])*"


_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")


_TRUE = re.compile(r"^(?:true|True|TRUE)$")


_FALSE = re.compile(r"^(?:false|False|FALSE)$")


_INT = re.compile(rf"^[-+]?{_DIGITS}$")


_OCT = re.compile(r"^0o[0-7]+$")


_HEX = re.compile(r"^0x[0-9a-fA-F]+$")


_FLOAT = re.compile(rf"^[-+]?(?:\.{_DIGITS}|{_DIGITS}(?:\.(?:{_DIGITS})?)?)(?:[eE][-+]?[0-9]+)?$")


LINE_BREAKS = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")  # as pyyaml counts lines


_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")


_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")


_SURROGATE = re.compile("[\ud800-\udfff]")


class NumberTooLong(ValueError):
    """A number literal longer than `MAX_NUMBER_LENGTH` characters."""

    def __init__(self, text: str) -> None:
        super().__init__(f"a number of {len(text):,} characters")
        self.length = len(text)

    def describe(self) -> tuple[str, str]:
        """Message and hint for a diagnostic."""
        return (f"this number is {self.length:,} characters long; a spec's numbers have at "
                f"most {MAX_NUMBER_LENGTH}",
                "write a shorter number (for a large value, e.g. 1e9), or quote it if it is "
                "meant as text")


def resolve_plain(text: str) -> Any:
    """The value of an untagged, unquoted scalar under the YAML 1.2 core schema.

    Raises `NumberTooLong` for a number literal of more than `MAX_NUMBER_LENGTH` characters.
    """
    if len(text) > MAX_NUMBER_LENGTH and (
        _INT.match(text) or _OCT.match(text) or _HEX.match(text) or _FLOAT.match(text)
    ):
        raise NumberTooLong(text)
    if _NULL.match(text):
        return None
    if _TRUE.match(text):
        return True
    if _FALSE.match(text):
        return False
    if _INT.match(text):
        return int(text)
    if _OCT.match(text):
        return int(text[2:], 8)
    if _HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


def reads_as_string(text: str) -> bool:
    """Whether `text`, written unquoted, would be read back as this string."""
    try:
        return isinstance(resolve_plain(text), str)
    except NumberTooLong:
        return False


def surrogate_in(text: str) -> str | None:
    """The first lone surrogate in `text` (from an escape such as \\ud800), if any."""
    found = _SURROGATE.search(text)
    return found.group() if found else None


def surrogate_problem(ch: str) -> tuple[str, str]:
    """Message and hint for a string that holds the lone surrogate `ch`."""
    return (f"this string holds U+{ord(ch):04X}, half of a surrogate pair, which is not a "
            "character",
            "write the character itself (or \\UXXXXXXXX for one beyond U+FFFF)")


def short_tag(tag: str) -> str:
    return "!!" + tag[len(STD_TAG) :] if tag.startswith(STD_TAG) else tag


def kind_of(value: Any) -> str:
    """How a value reads to the person who wrote it: 'a mapping', 'a number'..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
