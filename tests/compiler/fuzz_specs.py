"""A seeded fuzzer of spec input: mutated shipped specs (YAML and .ng) and overrides.

Each case takes a shipped spec in one of its two forms and either mutates its structure (drops
keys, swaps types, writes 0, negatives, NaN, infinities, huge numbers, long and odd strings)
and writes it back as text in that form, or applies `path=value` overrides through the same
machinery `validate` uses, or damages the text itself. It is then read, validated and compiled
up to the schedule (everything before the network is built), and any diagnostics are printed
as text and as JSON. Every outcome is the spec being accepted, or one of the project's own
errors; anything else is a crash, classified by `classify`.

``python tests/compiler/fuzz_specs.py --cases 10000`` runs a long campaign and prints the tally.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from nestgraph.errors import NestgraphError, SpecError
from nestgraph.fmt.emit import Unwritable
from nestgraph.spec import shipped_specs
from nestgraph.spec.comments import Attached
from nestgraph.spec.source import diagnostics_as_json, format_diagnostics

HOSTILE_VALUES: list[Any] = [
    0, -1, 1, 2, -(10**9), 2**31, 2**63, 10**30, 10**99, 1e308, -1e308, 1e-320, 0.5, -0.0,
    math.nan, math.inf, -math.inf, True, False, None, "", " ", "x" * 300, "x" * 5000,
    "\x1b[2J\x1b[31m", "a\u202eb", "\u200b", "tab\there", "line\nbreak", "\U0001f600",
    "0 tokens", "-4 tokens", "1 token", "3 steps", "1000000000000 tokens",
    "99999999999999999999999 tokens", "nan tokens", "rest", "tokens", "corpus", "output of outer",
    "gradients of outer", "self", "adamw", "gd", [], {}, [1, 2], ["rest"], {"type": "gd"},
    {"type": "adamw", "lr": math.nan}, {"kind": "mlp"}, [[[]]],
]

OVERRIDE_VALUES = [
    "0", "-1", "1", ".nan", ".inf", "-.inf", "1e999", "1e-999", "9" * 30, "9" * 5000, "[]", "{}",
    "null", "true", "''", "'\x1b[2J'", "\"\\u202e\"", "2 steps", "0 tokens", "7 tokens",
    "1000000000000 tokens", "[a, b]", "{type: gd, lr: .nan}", "abc", "0x10", "0o7", "1_000",
    "[1, [2, [3]]]", "&a [*a]", "!!python/object:os.system x", "'\\ud800'", "\"\\ud800\"",
]


@dataclass
class Tally:
    cases: int = 0
    valid: int = 0
    errors: Counter = field(default_factory=Counter)  # error type name -> count
    crashes: Counter = field(default_factory=Counter)  # crash class -> count
    examples: dict[str, str] = field(default_factory=dict)  # crash class -> one reproducer

    def add_error(self, err: NestgraphError) -> None:
        self.errors[type(err).__name__] += 1

    def summary(self) -> str:
        lines = [f"{self.cases} cases: {self.valid} valid",
                 *(f"  {name}: {n}" for name, n in sorted(self.errors.items())),
                 f"  internal errors (crashes): {sum(self.crashes.values())}",
                 *(f"    {name}: {n}" for name, n in sorted(self.crashes.items()))]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- the corpus


def corpus() -> list[tuple[str, str, str]]:
    """(name, form, text) of every shipped spec in both forms."""
    out = []
    for folder in ("", "optimizers", "ablations"):
        for form, suffix in (("yaml", ".yaml"), ("ng", ".ng")):
            for name, path in shipped_specs(suffix, folder).items():
                out.append((name, form, path.read_text(encoding="utf-8")))
    return out


def parse(text: str, form: str, filename: str):
    if form == "ng":
        from nestgraph.spec.dsl_front import load_dsl

        return load_dsl(text, filename)
    from nestgraph.spec.yaml_front import load_yaml

    return load_yaml(text, filename)


def render(data: dict, form: str) -> str:
    from nestgraph.fmt.emit_ng import to_ng
    from nestgraph.fmt.emit_yaml import to_yaml

    return to_ng(data, Attached()) if form == "ng" else to_yaml(data, Attached())


# ----------------------------------------------------------------------------- mutations


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*path, i))
    return found


def _parent(data: Any, path: tuple) -> Any:
    node = data
    for key in path[:-1]:
        node = node[key]
    return node


def _swapped(value: Any, rng: random.Random) -> Any:
    if isinstance(value, str):
        return rng.choice([[value], {"x": value}, len(value), value * rng.randint(2, 50)])
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return rng.choice([str(value), [value], -value, value * 10**rng.randint(3, 40),
                           value + 0.5])
    if isinstance(value, list):
        return rng.choice([{str(i): v for i, v in enumerate(value)}, value[:1] * 40,
                           value[::-1], ",".join(map(str, value))])
    if isinstance(value, dict):
        return rng.choice([list(value.values()), list(value), {}])
    return rng.choice(HOSTILE_VALUES)


def mutate(data: dict, rng: random.Random) -> str:
    """One structural mutation of `data` in place; a description of it."""
    path = rng.choice(_paths(data)[1:])
    parent, key = _parent(data, path), path[-1]
    what = rng.random()
    if what < 0.25:
        del parent[key]
        return f"drop {path}"
    if what < 0.6:
        value = copy.deepcopy(rng.choice(HOSTILE_VALUES))
        parent[key] = value
        return f"set {path} = {value!r:.60}"
    if what < 0.8:
        parent[key] = _swapped(parent[key], rng)
        return f"swap {path}"
    if what < 0.9 and isinstance(parent, dict):
        value = parent.pop(key)
        typo = str(key)[:-1] + rng.choice("sx_") if str(key) else "k"
        parent[typo] = value
        return f"rename {path} -> {typo}"
    if isinstance(parent, list):
        parent.insert(rng.randrange(len(parent) + 1), copy.deepcopy(parent[key]))
        return f"duplicate {path}"
    parent[f"extra{rng.randint(0, 9)}"] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
    return f"add a key beside {path}"


def override(data: dict, rng: random.Random) -> str:
    path = rng.choice(_paths(data)[1:])
    named = []
    for i, key in enumerate(path):
        if i == 1 and path[0] == "levels" and isinstance(key, int) and rng.random() < 0.7:
            level = data["levels"][key]
            named.append(str(level.get("name", key)) if isinstance(level, dict) else str(key))
        else:
            named.append(str(key))
    if rng.random() < 0.1:
        named.append(rng.choice(["bogus", "every", "0", "99", "9" * 40]))
    dotted = ".".join(named)
    if rng.random() < 0.1:
        return f"~{dotted}"
    return f"{dotted}={rng.choice(OVERRIDE_VALUES)}"


def damage(text: str, rng: random.Random) -> str:
    """A text mutation: a line dropped or doubled, a character inserted or removed."""
    lines = text.split("\n")
    i = rng.randrange(len(lines))
    what = rng.random()
    if what < 0.3:
        del lines[i]
    elif what < 0.5:
        lines.insert(i, lines[i])
    else:
        line = lines[i]
        at = rng.randrange(len(line) + 1)
        ch = rng.choice(["[", "]", "{", "}", "(", ")", ":", ",", "\"", "'", "#", "&a ", "*a",
                         "\t", " ", "-", "9" * 40, "9" * 5000, "\x1b", "\u202e", "\\", "!!", "%", "@"])
        lines[i] = line[:at] + ch + line[at + (rng.random() < 0.3):]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- running


def run_case(name: str, form: str, text: str, rng: random.Random) -> tuple[str, str]:
    """Returns (outcome, description): outcome is "valid", an error type name, or "crash"."""
    from nestgraph.compiler import compile_spec
    from nestgraph.spec.overrides import apply_overrides

    filename = f"{name}.{form}"
    overrides: list[str] = []
    kind = rng.random()
    described = ""
    source = None
    try:
        if kind < 0.45:
            data, _ = parse(text, form, filename)
            data = copy.deepcopy(data)
            described = "; ".join(mutate(data, rng) for _ in range(rng.randint(1, 3)))
            try:
                text = render(data, form)
            except Unwritable:
                form = "yaml" if form == "ng" else form
                text = render(data, "yaml")
        elif kind < 0.8:
            data, _ = parse(text, form, filename)
            overrides = [override(data, rng) for _ in range(rng.randint(1, 3))]
            described = f"overrides {overrides!r}"
        else:
            for _ in range(rng.randint(1, 3)):
                text = damage(text, rng)
            described = "damaged text"
        data, source = parse(text, form, filename)
        data = apply_overrides(data, source, overrides)
        compile_spec(data, source, stop_after="validated")
        return "valid", described
    except NestgraphError as err:
        if isinstance(err, SpecError):
            shown = err.source if err.source is not None else source
            format_diagnostics(err.diagnostics, shown)
            json.dumps(diagnostics_as_json(err.diagnostics, shown))
        return type(err).__name__, described
    except Exception:  # noqa: BLE001 - any other exception is what the fuzzer looks for
        return "crash", f"{described}\n{form} text:\n{text[:3000]}\n{traceback.format_exc()}"


def classify(report: str) -> str:
    """The class of a crash, from its traceback: the exception and the frame it came from."""
    lines = [line for line in report.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "?"
    frames = [line.strip() for line in lines if line.strip().startswith("File ")]
    where = frames[-1].split(",")[0].rsplit("/", 1)[-1].rstrip('"') if frames else "?"
    line_no = frames[-1].split(",")[1].strip() if frames else ""
    return f"{last.split(':')[0]} at {where} {line_no}"


def campaign(cases: int, seed: int = 0, time_limit: float = math.inf) -> Tally:
    rng = random.Random(seed)
    texts = corpus()
    tally = Tally()
    start = time.perf_counter()
    while tally.cases < cases and time.perf_counter() - start < time_limit:
        name, form, text = rng.choice(texts)
        outcome, described = run_case(name, form, text, random.Random(rng.random()))
        tally.cases += 1
        if outcome == "valid":
            tally.valid += 1
        elif outcome == "crash":
            kind = classify(described)
            tally.crashes[kind] += 1
            tally.examples.setdefault(kind, described)
        else:
            tally.errors[outcome] += 1
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", action="store_true", help="print one case per crash class")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    tally = campaign(args.cases, args.seed)
    print(tally.summary())
    print(f"{time.perf_counter() - start:.1f} s")
    if args.examples:
        for kind, example in tally.examples.items():
            print(f"\n=== {kind}\n{example}")
    return 1 if tally.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
