"""What every section of the schema shares: limits, finite numbers, names, rates, `Strict`."""

from __future__ import annotations

import keyword
import math
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    ConfigDict,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

SPEC_VERSION = 1

# Value bounds (documented in docs/spec.md, "Value bounds"). Sizes are bounded so that every
# size the compiler multiplies stays an ordinary integer; whether a model of that size fits in
# memory is the compiler's estimate, not the schema's.
NAME_MAX = 64  # characters of a name: names become identifiers, attributes and folder names
HEADS_MAX = 1024
CONV_MAX = 256  # a causal convolution's window, in tokens
EXPAND_MAX = 64.0  # an MLP's hidden width, as a multiple of its input width
SEQ_LEN_MAX = 1 << 20  # tokens of a training sequence; also the longest attention window
BATCH_MAX = 1 << 16
STEPS_MAX = 10**9  # steps, and every count of steps (warmup, log_every, ...)
PERIOD_MAX = 10**9  # the count of a level's period
SEED_LIMIT = 1 << 64  # seeds are 64-bit unsigned integers, as torch's generators take

# Every float of a spec is finite: YAML's .inf and .nan, 1e400, and a string such as 'inf'
# where a number goes are refused here, once for every field.
FiniteFloat = Annotated[float, AllowInfNan(False)]

_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


def _check_identifier(name: str) -> str:
    # Names become Python identifiers and attribute names in program.py, so they are held to
    # a strict pattern: lower-case, no leading underscore (so no dunders), no keywords.
    if len(name) > NAME_MAX:
        raise PydanticCustomError(
            "name_too_long",
            "a name is at most {limit} characters; '{start}...' has {length}",
            {"limit": NAME_MAX, "start": name[:24], "length": len(name),
             "hint": f"shorten it to {NAME_MAX} characters or fewer"})
    if not _IDENT.fullmatch(name):
        raise ValueError(
            f"'{name}' is not a valid name: use lower-case letters, digits and '_', "
            "starting with a letter"
        )
    if keyword.iskeyword(name) or name in {"rest", "self"}:
        raise ValueError(f"'{name}' is a reserved word and cannot be used as a name")
    return name


Identifier = Annotated[str, AfterValidator(_check_identifier)]

# A reference to a value another module produces, e.g. ``selfmod.eta``.
_REF = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


def _interval(low: float, high: float | None, low_open: bool, high_open: bool) -> str:
    """``[0, 1)``, ``(0, inf)``: the mathematician's notation for a range of numbers."""
    upper = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
    return f"{'(' if low_open else '['}{low:g}, {upper}"


def rate(low: float = 0.0, high: float | None = None, *, low_open: bool = False,
         high_open: bool = False):
    """A rate: a finite number in the given range, or the name of a value a module produces
    per token (``mem.lr``)."""
    span = _interval(low, high, low_open, high_open)

    def check(value: Any, info: ValidationInfo) -> Any:
        field = info.field_name or "rate"
        if isinstance(value, str):
            if _REF.fullmatch(value):
                return value
            try:
                float(value)
            except ValueError:
                hint = "write a number, or module.value for a rate the module produces"
            else:
                hint = f"write the number unquoted, a finite value in {span}"
            raise PydanticCustomError(
                "rate_reference",
                "'{value}' is neither a number nor a reference of the form module.value",
                {"value": value, "hint": hint})
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            raise PydanticCustomError(
                "rate_range", "'{field}' must be a finite number in {span}, not {value}",
                {"field": field, "value": repr(value), "span": span,
                 "hint": f"use a finite number in {span}, or module.value for a rate the "
                         "module produces"})
        return value

    number: dict[str, Any] = {"type": "number", ("exclusiveMinimum" if low_open else "minimum"): low}
    if high is not None:
        number["exclusiveMaximum" if high_open else "maximum"] = high
    return Annotated[float | str, AfterValidator(check),
                     WithJsonSchema({"anyOf": [number, {"type": "string", "pattern": _REF.pattern}]})]


# A learning rate; a retention or forgetting share; a momentum (1 would never forget).
Rate = rate(0.0, low_open=True)
Share = rate(0.0, 1.0)
MomentumRate = rate(0.0, 1.0, high_open=True)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------- model

