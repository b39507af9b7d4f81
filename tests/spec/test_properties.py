"""Properties of the two front ends, checked on generated input (hypothesis, bounded for CI).

* Any valid spec written as .ng or as YAML reads back as the same data and the same spec.
* Random byte mutations of a valid .ng file never crash the front end: the result is a valid
  spec or a `SpecError` whose every problem is placed in the file.
"""

from __future__ import annotations

import keyword
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nestgraph import load_spec
from nestgraph.errors import SpecError
from nestgraph.fmt.emit_ng import to_ng
from nestgraph.fmt.emit_yaml import to_yaml
from nestgraph.spec import shipped_specs
from nestgraph.spec.comments import Attached
from nestgraph.spec.dsl_front import load_dsl
from nestgraph.spec.schema import Spec
from nestgraph.spec.source import format_diagnostics
from nestgraph.spec.yaml_front import load_yaml

names = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n) and n not in ("rest", "self"))
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
floats = st.floats(min_value=1e-6, max_value=10.0, allow_nan=False)
reference = st.builds(lambda a, b: f"{a}.{b}", names, names)
rate = st.one_of(floats, reference)
share = st.one_of(st.floats(0, 1), reference)  # a forgetting rate is in [0, 1]
momentum = st.one_of(st.floats(0, 0.99), reference)
activation = st.sampled_from(["gelu", "silu", "relu"])
memory_arch = st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from(["mlp", "linear"]), "expand": floats})

modules = st.one_of(
    st.fixed_dictionaries({"type": st.just("attention")}, optional={
        "heads": st.integers(1, 8), "window": st.integers(0, 512), "rope": st.booleans(),
        "rope_base": floats}),
    st.fixed_dictionaries({"type": st.just("mlp")}, optional={
        "expand": floats, "activation": activation}),
    st.fixed_dictionaries({
        "type": st.just("mlp_chain"),
        "blocks": st.dictionaries(names, st.fixed_dictionaries({}, optional={
            "expand": floats, "activation": activation}), min_size=1, max_size=3)},
        optional={"variant": st.sampled_from(["sequential", "independent", "nested"])}),
    st.fixed_dictionaries({"type": st.just("neural_memory")}, optional={
        "heads": st.integers(1, 8), "memory": memory_arch, "conv": st.integers(0, 4),
        "qk_norm": st.booleans(), "gate": st.booleans()}),
    st.fixed_dictionaries({"type": st.just("self_modifying_titans")}, optional={
        "heads": st.integers(1, 8), "memory": memory_arch, "adaptive_q": st.booleans()}),
)

objectives = st.one_of(
    st.sampled_from(["next_token", "nadaraya_watson"]),
    st.fixed_dictionaries({"type": st.sampled_from(["l2", "dot"])},
                          optional={"values": st.sampled_from(["given", "self"])}),
)
rules = st.one_of(
    st.fixed_dictionaries({"type": st.just("gd"), "lr": rate}, optional={
        "momentum": st.floats(0, 0.99), "clip": floats}),
    st.fixed_dictionaries({"type": st.just("adamw"), "lr": floats}, optional={
        "betas": st.lists(st.floats(0, 0.999), min_size=2, max_size=2),
        "warmup": st.integers(0, 100), "schedule": st.sampled_from(["cosine", "constant"])}),
    st.just({"type": "closed_form"}),
    st.just("closed_form"),
    st.fixed_dictionaries({"type": st.just("titans"), "lr": rate}, optional={
        "forget": share, "momentum": momentum, "max_lr": floats}),
    st.fixed_dictionaries({"type": st.just("dgd"), "lr": rate}, optional={"forget": share}),
)
periods = st.builds(lambda n, unit: f"{n} {unit}{'s' if n != 1 else ''}",
                    st.integers(1, 5000), st.sampled_from(["token", "step"]))
flows = st.one_of(st.sampled_from(["tokens", "corpus"]),
                  st.builds(lambda kind, n: f"{kind} of {n}",
                            st.sampled_from(["output", "gradients"]), names))
levels = st.fixed_dictionaries(
    {"name": names, "owns": st.one_of(st.just("rest"), reference, st.lists(reference, max_size=3)),
     "every": periods, "context": flows, "objective": objectives, "rule": rules,
     "lifetime": st.sampled_from(["sequence", "stream", "run"])},
    optional={"meta": st.sampled_from(["second_order", "first_order"])})
block = st.lists(st.one_of(names, st.fixed_dictionaries(
    {"module": names}, optional={"residual": st.booleans(),
                                 "norm": st.sampled_from(["rms", "layer", "none"])})),
    min_size=1, max_size=3)
specs = st.fixed_dictionaries(
    {"nestgraph": st.just(1), "name": names,
     "model": st.fixed_dictionaries({"block": block}, optional={
         "dim": st.integers(1, 512), "layers": st.integers(1, 8), "tie_embeddings": st.booleans()}),
     "modules": st.dictionaries(names, modules, min_size=1, max_size=3),
     "levels": st.lists(levels, min_size=1, max_size=4)},
    optional={
        "about": text,
        "train": st.fixed_dictionaries({}, optional={
            "steps": st.integers(0, 10_000), "batch": st.integers(1, 64),
            "precision": st.sampled_from(["fp32", "bf16"]), "seed": st.integers(0, 10)}),
        "data": st.fixed_dictionaries({}, optional={"source": text, "heldout": st.floats(0.01, 0.5)}),
    })

BOUNDED = settings(max_examples=150, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow])


@BOUNDED
@given(specs)
def test_spec_to_ng_to_spec(data: dict[str, Any]) -> None:
    expected = Spec.model_validate(data)
    back, _ = load_dsl(to_ng(data, Attached()), "t.ng")
    assert back == data
    assert Spec.model_validate(back) == expected


@BOUNDED
@given(specs)
def test_spec_to_yaml_to_spec(data: dict[str, Any]) -> None:
    expected = Spec.model_validate(data)
    back, _ = load_yaml(to_yaml(data, Attached()), "t.yaml")
    assert back == data
    assert Spec.model_validate(back) == expected


# ---------------------------------------------------------------------------------- fuzzing

SEED = shipped_specs(".ng")["hope"].read_bytes()
# Pieces of the language, so that mutations reach past the lexer into the parser and passes.
PIECES = [b"level", b"module", b"every", b"on", b"by", b"minimise", b":", b",", b"=", b"(",
          b")", b"[", b"]", b"{", b"}", b'"', b"#", b"\n", b"16", b"tokens", b"rest", b"x.y",
          b"of", b"-1", b"1e9", b"\xff", b"\xc3", b"\t", b" "]


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(SEED)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "piece", "cut"]))
        if kind == "insert":
            data[at:at] = bytes([draw(st.integers(0, 255))])
        elif kind == "delete":
            del data[at:at + 1]
        elif kind == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "piece":
            data[at:at] = draw(st.sampled_from(PIECES))
        else:
            del data[at:at + draw(st.integers(1, 40))]
    return bytes(data)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_ng_never_crashes_the_front_end(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.ng"
        path.write_bytes(raw)
        try:
            load_spec(str(path))
        except SpecError as err:
            text = format_diagnostics(err.diagnostics, err.source)
            for d in err.diagnostics:
                if d.code == "E-FILE":  # not UTF-8: the message itself gives line and column
                    assert "line" in d.message
                    continue
                placed = err.source is not None and err.source.locate(d.path, d.part)
                assert placed, text
