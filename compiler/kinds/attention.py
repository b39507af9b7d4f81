"""Causal softmax attention: the non-parametric in-context level's module (its state: the cache)."""

from __future__ import annotations

from nestgraph.compiler.kinds.base import Flow, ModuleKind, Ownable, bodies, call

CORE = ("nestgraph.runtime.layers.core", "L")


def ownables(name: str, spec, model) -> list[Ownable]:
    paths = tuple(bodies(name, model))
    return [Ownable(name, "param", name, paths, False, "attention"),
            Ownable(f"{name}.cache", "state", name, paths, False, "attention")]


def attention_call(dim: int, heads: int, window: int, rope: bool, rope_base: float,
                   persistent: int = 0):
    extra = {"persistent": persistent} if persistent else {}  # absent: the goldens stay
    return call("L.Attention", dim=dim, heads=heads, window=window, use_rope=rope,
                rope_base=rope_base, **extra)


def constructor(spec, dim: int, owners: dict):
    return attention_call(dim, spec.heads, spec.window, spec.rope, spec.rope_base,
                          spec.persistent)


def flops(ownable: Ownable, spec, model, seq_len: int) -> int:
    d, layers = model.dim, len(ownable.paths)
    if ownable.kind == "param":  # q, k, v, out
        return layers * 2 * 4 * d * d
    # the cache: scores and the weighted sum over the context
    context = min(spec.window, seq_len) if spec.window else seq_len
    always = getattr(spec, "persistent", 0)  # persistent tokens: seen by every query
    return layers * 2 * 2 * d * ((context + 1) // 2 + always)


def flow(name: str, spec, present: list[str]) -> Flow:
    if f"{name}.cache" not in present:
        return Flow([name], [name])
    return Flow([name], [name], [(name, f"{name}.cache", "values", "k, v"),
                                 (f"{name}.cache", name, "data", "read")])


KIND = ModuleKind("attention", ownables, constructor, flops, (CORE,), flow)
