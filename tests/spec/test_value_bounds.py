"""Hostile values: every number of a spec is finite and within its documented bound, every name
short; each refusal is a positioned schema error with a fix hint, never a crash later on."""

from __future__ import annotations

import re

import pytest

from nestgraph.compiler import check_document
from nestgraph.errors import SpecError
from nestgraph.spec.dsl_front import load_dsl
from nestgraph.spec.schema import NAME_MAX
from nestgraph.spec.source import format_diagnostics
from nestgraph.spec.yaml_front import load_yaml

TINY = """\
nestgraph: 1
name: tiny
model:
  dim: 8
  layers: 1
  block: [attn, mem, mlp]
modules:
  attn: {type: attention, heads: 2, window: 0}
  mem: {type: neural_memory, heads: 2, conv: 4, memory: {kind: mlp, expand: 2}}
  mlp: {type: mlp, expand: 2}
levels:
  - name: attention
    owns: attn.cache
    every: 1 token
    context: tokens
    objective: nadaraya_watson
    rule: {type: closed_form}
    lifetime: sequence
  - name: memory
    owns: mem.memory
    every: 4 tokens
    context: tokens
    objective: l2
    rule: {type: titans, lr: mem.lr, forget: mem.forget, momentum: mem.momentum}
    lifetime: sequence
  - name: outer
    owns: rest
    every: 1 step
    context: corpus
    objective: next_token
    rule: {type: adamw, lr: 1.0e-3, betas: [0.9, 0.95]}
    lifetime: run
train: {steps: 2, batch: 2, seq_len: 16, seed: 0}
"""

TINY_NG = """\
nestgraph 1
spec tiny

model: dim 8, layers 1, block [attn, mlp]

module attn = attention(heads=2)
module mlp = mlp(expand=2)

level attention every 1 token on tokens:
    owns attn.cache
    minimise nadaraya_watson by closed_form()
    lifetime sequence

level outer every 1 step on corpus: owns rest, minimise next_token by adamw(lr=0.001), lifetime run

train: steps 2, batch 2, seq_len 16
"""


def test_the_tiny_specs_are_valid() -> None:
    check_document(*load_yaml(TINY, "t.yaml"))
    check_document(*load_dsl(TINY_NG, "t.ng"))


def refusal(text: str, old: str, new: str, filename: str = "t.yaml", count: int = 1):
    """The one schema diagnostic `text` with `old` replaced by `new` gets, and how it is
    printed."""
    assert text.count(old) == 1, old
    changed = text.replace(old, new)
    load = load_dsl if filename.endswith(".ng") else load_yaml
    data, source = load(changed, filename)
    with pytest.raises(SpecError) as caught:
        check_document(data, source)
    # (a level the schema refuses may draw a graph error too: that cascade is not this test's)
    found = [d for d in caught.value.diagnostics if d.code == "E-SCHEMA"]
    assert len(found) == count, caught.value.diagnostics
    shown = format_diagnostics(found, caught.value.source)
    line = 1 + changed[:changed.index(new)].count("\n")
    assert re.match(rf"{re.escape(filename)}:{line}:\d+: error\[E-SCHEMA\]: ", shown), shown
    assert found[0].hint, shown
    return found[0], shown


NON_FINITE = [
    ("lr: 1.0e-3", "lr: .inf"),
    ("lr: 1.0e-3", "lr: -.inf"),
    ("lr: 1.0e-3", "lr: .nan"),
    ("lr: 1.0e-3", "lr: 1e400"),
    ("lr: 1.0e-3", "lr: 'inf'"),
    ("lr: 1.0e-3", "lr: 'nan'"),
    ("betas: [0.9, 0.95]", "betas: [0.9, .nan]"),
    ("expand: 2}}", "expand: .inf}}"),
    ("{type: mlp, expand: 2}", "{type: mlp, expand: .nan}"),
    ("forget: mem.forget", "forget: .nan"),
    ("lr: mem.lr", "lr: .inf"),
    ("lr: mem.lr", "lr: 'inf'"),
]


@pytest.mark.parametrize(("old", "new"), NON_FINITE, ids=[n for _, n in NON_FINITE])
def test_non_finite_numbers_are_refused_where_written(old: str, new: str) -> None:
    diagnostic, shown = refusal(TINY, old, new)
    assert re.search(r"finite|out(side)? (of )?(the )?range|neither a number", shown), shown


@pytest.mark.parametrize("number", ["1e999", "-1e999", "inf", "nan"])
def test_non_finite_numbers_in_the_dsl_are_refused(number: str) -> None:
    diagnostic, _ = refusal(TINY_NG, "adamw(lr=0.001)", f"adamw(lr={number})", "t.ng")
    assert diagnostic.path == ("levels", 1, "rule", "lr")


SIZES = [
    ("expand: 2}}", "expand: 1e300}}", ("modules", "mem", "memory", "expand")),
    ("{type: mlp, expand: 2}", "{type: mlp, expand: 65}", ("modules", "mlp", "expand")),
    ("window: 0", "window: 1.0e+24", ("modules", "attn", "window")),
    ("window: 0", "window: 1048577", ("modules", "attn", "window")),
    ("conv: 4", "conv: 9223372036854775808", ("modules", "mem", "conv")),
    ("conv: 4", "conv: 257", ("modules", "mem", "conv")),
    ("heads: 2, window", "heads: 4096, window", ("modules", "attn", "heads")),
    ("batch: 2", "batch: 65537", ("train", "batch")),
    ("seq_len: 16", "seq_len: 1048577", ("train", "seq_len")),
    ("steps: 2", "steps: 1000000001", ("train", "steps")),
    ("seed: 0", "seed: 18446744073709551616", ("train", "seed")),
    ("seed: 0", "seed: -1", ("train", "seed")),
    ("every: 4 tokens", "every: 99999999999999999999999 tokens", ("levels", 1, "every")),
]


@pytest.mark.parametrize(("old", "new", "path"), SIZES, ids=[n for _, n, _ in SIZES])
def test_sizes_have_an_upper_bound(old: str, new: str, path: tuple) -> None:
    diagnostic, shown = refusal(TINY, old, new)
    assert diagnostic.path == path
    assert re.search(r"at most|less than|out of range", shown), shown


def test_the_largest_seed_is_accepted() -> None:
    check_document(*load_yaml(TINY.replace("seed: 0", f"seed: {2**64 - 1}"), "t.yaml"))


RATES = [
    # what a torch optimizer refuses at its first step
    ("betas: [0.9, 0.95]", "betas: [-5, 0.95]", ("levels", 2, "rule", "betas", 0)),
    ("betas: [0.9, 0.95]", "betas: [0.9, 1.0]", ("levels", 2, "rule", "betas", 1)),
    ("lr: 1.0e-3", "lr: -1.0e-3", ("levels", 2, "rule", "lr")),
    ("{type: adamw, lr: 1.0e-3, betas: [0.9, 0.95]}", "{type: gd, lr: -0.1}",
     ("levels", 2, "rule", "lr")),
    # a memory level's constant rates, NaN at the first step
    ("lr: mem.lr", "lr: -100", ("levels", 1, "rule", "lr")),
    ("forget: mem.forget", "forget: 7", ("levels", 1, "rule", "forget")),
    ("forget: mem.forget", "forget: -0.5", ("levels", 1, "rule", "forget")),
    ("momentum: mem.momentum", "momentum: -2", ("levels", 1, "rule", "momentum")),
    ("momentum: mem.momentum", "momentum: 1", ("levels", 1, "rule", "momentum")),
    ("momentum: mem.momentum}", "momentum: mem.momentum, max_lr: -1}",
     ("levels", 1, "rule", "max_lr")),
    ("momentum: mem.momentum}", "momentum: mem.momentum, max_momentum: 1.5}",
     ("levels", 1, "rule", "max_momentum")),
]


@pytest.mark.parametrize(("old", "new", "path"), RATES, ids=[n for _, n, _ in RATES])
def test_rates_are_bounded_from_both_sides(old: str, new: str, path: tuple) -> None:
    diagnostic, shown = refusal(TINY, old, new)
    assert diagnostic.path == path


def test_both_betas_out_of_range_are_both_reported() -> None:
    refusal(TINY, "betas: [0.9, 0.95]", "betas: [-5, 7]", count=2)


def test_a_rate_out_of_range_says_its_range() -> None:
    _, shown = refusal(TINY, "forget: mem.forget", "forget: 7")
    assert "[0, 1]" in shown and "help:" in shown


def test_a_quoted_number_as_a_rate_says_to_unquote_it() -> None:
    _, shown = refusal(TINY, "forget: mem.forget", "forget: '0.5'")
    assert "unquoted" in shown


@pytest.mark.parametrize("where", ["name: tiny", "  - name: outer", "  mlp: {type: mlp"])
def test_names_are_at_most_64_characters(where: str) -> None:
    long = "n" * 300
    new = where.replace("tiny", long).replace("outer", long).replace("mlp:", f"{long}:")
    assert TINY.count(where) == 1
    changed = TINY.replace(where, new)
    with pytest.raises(SpecError) as caught:
        check_document(*load_yaml(changed, "t.yaml"))
    found = [d for d in caught.value.diagnostics if d.code == "E-SCHEMA"]
    shown = format_diagnostics(found, caught.value.source)
    assert len(found) == 1 and found[0].hint, shown
    assert f"at most {NAME_MAX} characters" in shown and "300" in shown, shown
    line = 1 + changed[:changed.index(long)].count("\n")
    assert re.match(rf"t\.yaml:{line}:\d+: error\[E-SCHEMA\]", shown), shown


def test_a_name_of_64_characters_is_accepted() -> None:
    check_document(*load_yaml(TINY.replace("name: tiny", f"name: {'n' * NAME_MAX}"), "t.yaml"))
