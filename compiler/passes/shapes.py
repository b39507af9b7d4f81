"""Shapes: build the network on the meta device and push a batch through it.

Requires: a valid graph. Ensures: ``facts(g).param_shapes`` (runtime parameter name -> shape)
and ``facts(g).part_params`` (part -> number of weights). The meta device allocates nothing,
so this costs milliseconds whatever the model's size. It also checks that the compiler's idea of
which runtime weights make up each part covers every weight exactly once.
"""

from __future__ import annotations

import networkx as nx

from nestgraph.compiler.ir import IRError, facts, memory_levels, parts
from nestgraph.compiler.kinds import call
from nestgraph.compiler.kinds.calls import build
from nestgraph.compiler.kinds.network import imports, layer_call, model_kwargs
from nestgraph.errors import CompileError


def infer_shapes(g: nx.DiGraph) -> None:
    import torch

    spec = facts(g).spec
    aliases = imports(spec)
    # Every layer is made by the same build_layer(): the network is built and run with one,
    # and the other layers' weights are that one's under their own index. The pass costs the
    # same for 1 layer or 1,024 (it grew with depth: 168 s for Hope at 1,024 layers). The
    # calls are the ones the code generator writes into program.py.
    with torch.device("meta"):
        try:
            layer = build(layer_call(spec, memory_levels(g)), aliases)
            model = build(call("L.NestedLM", layers=[layer], **model_kwargs(spec)), aliases)
            tokens = torch.zeros(2, min(spec.train.seq_len, 8), dtype=torch.long)
            logits = model(tokens, {})
        except (RuntimeError, ValueError) as err:
            raise CompileError(f"the network cannot be built: {err}", pass_name="shapes") from err
    expected = (2, tokens.shape[1], spec.model.vocab)
    if tuple(logits.shape) != expected:
        raise CompileError(f"the network maps {tuple(tokens.shape)} tokens to logits of shape "
                           f"{tuple(logits.shape)}, expected {expected}", pass_name="shapes")
    shapes = _every_layer({n: tuple(p.shape) for n, p in model.named_parameters()},
                          spec.model.layers)
    facts(g).param_shapes = shapes
    facts(g).part_params = _count_parts(g, shapes)


def _every_layer(shapes: dict[str, tuple], layers: int) -> dict[str, tuple]:
    """The weights of a one-layer network written out for `layers` layers, in module order."""
    first = {n: shape for n, shape in shapes.items() if n.startswith(_LAYER)}
    out: dict[str, tuple] = {}
    placed = False
    for n, shape in shapes.items():
        if n not in first:
            out[n] = shape
        elif not placed:  # every layer stands where layer 0 did
            placed = True
            for i in range(layers):
                out.update((f"layers.{i}.{k[len(_LAYER):]}", v) for k, v in first.items())
    return out


_LAYER = "layers.0."


def _count_parts(g: nx.DiGraph, shapes: dict) -> dict[str, int]:
    """Weights per part; every runtime weight falls in exactly one part (else IRError).

    A weight belongs to the parts one of whose paths is the weight's name or a dotted prefix
    of it; looked up prefix by prefix, so this is linear in the number of weights.
    """
    by_path: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for part in parts(g):
        if part.kind != "param":
            continue
        counts[part.name] = 0
        for path in part.paths:
            by_path.setdefault(path, []).append(part.name)
    missing = []
    for n, shape in shapes.items():
        segments = n.split(".")
        found = list(dict.fromkeys(
            owner for k in range(1, len(segments) + 1)
            for owner in by_path.get(".".join(segments[:k]), ())))
        if len(found) > 1:
            raise IRError(f"weight {n!r} falls in both {found[0]!r} and {found[1]!r}")
        if not found:
            missing.append(n)
            continue
        counts[found[0]] += _numel(shape)
    if missing:
        raise IRError(f"runtime weights in no part: {sorted(missing)}")
    return counts


def _numel(shape: tuple) -> int:
    out = 1
    for s in shape:
        out *= s
    return out
