"""The whole network as `Call`s: one layer (every module of model.block as x + module(norm(x)))
and the model around the layers. Both the code generator and the shapes pass start here."""

from __future__ import annotations

from nestgraph.compiler.kinds.attention import CORE
from nestgraph.compiler.kinds.base import Call, Ownable, call
from nestgraph.compiler.kinds.registry import module_kind


def layer_call(spec, memory_levels: dict) -> Call:
    """`L.Layer`: `memory_levels` maps a memory module's name to the levels owning its memories."""
    m = spec.model
    blocks = {}
    for entry in m.block:
        module = spec.modules[entry.module]
        body = module_kind(module.type).constructor(module, m.dim,
                                                    memory_levels.get(entry.module, {}))
        blocks[entry.module] = call("L.Residual", call("L.make_norm", entry.norm, m.dim), body,
                                    residual=entry.residual)
    return call("L.Layer", blocks)


def model_kwargs(spec) -> dict:
    """`L.NestedLM`'s arguments other than its layers."""
    m = spec.model
    return {"vocab": m.vocab, "dim": m.dim, "final_norm": call("L.make_norm", m.final_norm, m.dim),
            "tie_embeddings": m.tie_embeddings}


def imports(spec) -> dict[str, str]:
    """Alias -> runtime module, for every kind the spec uses (the core layers always)."""
    out = dict([tuple(reversed(CORE))])
    for module in spec.modules.values():
        out.update((alias, path) for path, alias in module_kind(module.type).imports)
    return out


def model_ownables(model) -> list[Ownable]:
    """The model's own weights: embedding, unembedding (when untied), norms."""
    out = [Ownable("embedding", "param", "", ("embed",), False, "embedding")]
    if not model.tie_embeddings:
        out.append(Ownable("unembedding", "param", "", ("unembed",), False, "linear"))
    norms = [f"layers.{i}.blocks.{b.module}.norm" for i in range(model.layers)
             for b in model.block if b.norm != "none"]
    if model.final_norm != "none":
        norms.append("norm")
    if norms:
        out.append(Ownable("norms", "param", "", tuple(norms), False, "norm"))
    return out


def model_flops(ownable: Ownable, model) -> int:
    if ownable.name == "embedding":  # tied: the embedding is also the output projection
        return 2 * model.dim * model.vocab if model.tie_embeddings else 0
    if ownable.name == "unembedding":
        return 2 * model.dim * model.vocab
    return 0


def forward_flops(ownable: Ownable, spec, model, seq_len: int) -> int:
    """Forward multiply-adds x2 per token for one ownable (of module `spec`), over layers."""
    if not ownable.module:
        return model_flops(ownable, model)
    return module_kind(spec.type).flops(ownable, spec, model, seq_len)
