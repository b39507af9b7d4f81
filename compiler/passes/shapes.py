"""Shapes: build the network on the meta device and push a batch through it.

Requires: a valid graph. Ensures: ``g.graph["param_shapes"]`` (runtime parameter name -> shape)
and ``g.graph["part_params"]`` (part -> number of weights). The meta device allocates nothing,
so this costs milliseconds whatever the model's size. It also checks that the compiler's idea of
which runtime weights make up each part covers every weight exactly once.
"""

from __future__ import annotations

import networkx as nx

from nestgraph.compiler.codegen import model_source
from nestgraph.compiler.ir import IRError, memory_levels, parts
from nestgraph.errors import CompileError


def infer_shapes(g: nx.DiGraph) -> None:
    import torch

    from nestgraph.runtime import layers, selfmod_layer, titans

    spec = g.graph["spec"]
    namespace = {"L": layers, "T": titans, "S": selfmod_layer}
    source = model_source(spec, memory_levels(g))
    exec(compile(source, "<nestgraph model>", "exec"), namespace)  # noqa: S102
    with torch.device("meta"):
        try:
            model = namespace["build_model"]()
            tokens = torch.zeros(2, min(spec.train.seq_len, 8), dtype=torch.long)
            logits = model(tokens, {})
        except (RuntimeError, ValueError) as err:
            raise CompileError(f"the network cannot be built: {err}", pass_name="shapes") from err
    expected = (2, tokens.shape[1], spec.model.vocab)
    if tuple(logits.shape) != expected:
        raise CompileError(f"the network maps {tuple(tokens.shape)} tokens to logits of shape "
                           f"{tuple(logits.shape)}, expected {expected}", pass_name="shapes")
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    g.graph["param_shapes"] = shapes
    g.graph["part_params"] = _count_parts(g, shapes)


def _count_parts(g: nx.DiGraph, shapes: dict) -> dict[str, int]:
    claimed: dict[str, str] = {}
    counts = {}
    for part in parts(g):
        if part.kind != "param":
            continue
        names = [n for n in shapes if any(n == p or n.startswith(p + ".") for p in part.paths)]
        for n in names:
            if n in claimed:
                raise IRError(f"weight {n!r} falls in both {claimed[n]!r} and {part.name!r}")
            claimed[n] = part.name
        counts[part.name] = sum(_numel(shapes[n]) for n in names)
    missing = sorted(set(shapes) - set(claimed))
    if missing:
        raise IRError(f"runtime weights in no part: {missing}")
    return counts


def _numel(shape: tuple) -> int:
    out = 1
    for s in shape:
        out *= s
    return out
