"""What each module type contributes: the states a level can own, its code, its cost.

One small entry per module type (the torchtune "component builder" idea): the compiler asks the
registry, never the runtime, so `nestgraph validate` needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from nestgraph.spec.schema import (
    AttentionSpec,
    MemoryAsGateSpec,
    MLPChainSpec,
    MLPSpec,
    ModelSpec,
    NeuralMemorySpec,
    SelfModifyingTitansSpec,
)


@dataclass(frozen=True)
class Ownable:
    """A state a level can own: ``cms.fast``, ``attn``, ``attn.cache``, ``embedding``."""

    name: str
    kind: str  # "param" (weights) or "state" (non-parametric, e.g. an attention cache)
    module: str  # the spec's module name; "" for the model's own weights
    paths: tuple[str, ...]  # runtime module (or parameter) paths, one per layer
    fast: bool  # whether a next-token in-context level can update it as fast weights
    type: str  # module type, for messages
    memory: bool = False  # an associative memory written inside its module's forward pass


def body_path(layer: int, module: str) -> str:
    return f"layers.{layer}.blocks.{module}.body"


def hidden_of(dim: int, expand: float) -> int:
    return max(1, round(dim * expand))


def module_ownables(name: str, spec, model: ModelSpec) -> list[Ownable]:
    bodies = [body_path(i, name) for i in range(model.layers)]
    if isinstance(spec, AttentionSpec):
        return [Ownable(name, "param", name, tuple(bodies), False, spec.type),
                Ownable(f"{name}.cache", "state", name, tuple(bodies), False, spec.type)]
    if isinstance(spec, MLPSpec):
        return [Ownable(name, "param", name, tuple(bodies), True, spec.type)]
    if isinstance(spec, NeuralMemorySpec):
        return [Ownable(name, "param", name, tuple(f"{b}.proj" for b in bodies), False, spec.type),
                Ownable(f"{name}.memory", "param", name, tuple(f"{b}.memory" for b in bodies),
                        False, spec.type, memory=True)]
    if isinstance(spec, MemoryAsGateSpec):
        return [Ownable(f"{name}.attn", "param", name, tuple(f"{b}.attn" for b in bodies), False,
                        "attention"),
                Ownable(f"{name}.cache", "state", name, tuple(f"{b}.attn" for b in bodies), False,
                        "attention"),
                Ownable(name, "param", name, tuple(f"{b}.{p}" for b in bodies
                                                   for p in ("mem.proj", "norms")),
                        False, "neural_memory"),
                Ownable(f"{name}.memory", "param", name, tuple(f"{b}.mem.memory" for b in bodies),
                        False, "neural_memory", memory=True)]
    if isinstance(spec, SelfModifyingTitansSpec):
        return [Ownable(name, "param", name, tuple(f"{b}.proj" for b in bodies), False, spec.type),
                Ownable(f"{name}.memory", "param", name, tuple(f"{b}.memory" for b in bodies),
                        False, spec.type, memory=True),
                Ownable(f"{name}.projections", "param", name,
                        tuple(f"{b}.projections" for b in bodies), False, spec.type,
                        memory=True)]
    if isinstance(spec, MLPChainSpec):
        parts = [Ownable(f"{name}.{block}", "param", name,
                         tuple(f"{b}.blocks.{block}" for b in bodies), True, spec.type)
                 for block in spec.blocks]
        if spec.variant == "independent":
            parts.append(Ownable(f"{name}.mix", "param", name,
                                 tuple(f"{b}.mix" for b in bodies), False, spec.type))
        return parts
    raise TypeError(f"no registry entry for module type {type(spec).__name__}")


def model_ownables(model: ModelSpec) -> list[Ownable]:
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


def produces(spec) -> tuple[str, ...]:
    """The per-token values a module computes that a level's rule may name (``mem.lr``)."""
    if isinstance(spec, NeuralMemorySpec | MemoryAsGateSpec):
        return ("lr", "forget", "momentum")
    if isinstance(spec, SelfModifyingTitansSpec):
        return ("lr", "forget")
    return ()


def module_source(spec, dim: int, owners: dict | None = None) -> str:
    """The runtime constructor call for one module, every literal through repr.

    A memory module also takes the settings of the levels that own its memories (`owners`:
    ``{"memory": level, "projections": level}``): their chunks, objectives and rules, which it
    applies inside its forward pass.
    """
    owners = owners or {}
    level = owners.get("memory")
    if isinstance(spec, SelfModifyingTitansSpec):
        return _selfmod_source(spec, dim, level, owners.get("projections"))
    if isinstance(spec, NeuralMemorySpec):
        return _memory_source(spec, dim, level)
    if isinstance(spec, MemoryAsGateSpec):
        attention = (f"L.Attention(dim={dim!r}, heads={spec.heads!r}, window={spec.window!r}, "
                     "use_rope=True, rope_base=10000.0)")
        return f"T.MemoryAsGate({attention}, {_memory_source(spec, dim, level, gate=False)})"
    if isinstance(spec, AttentionSpec):
        return (f"L.Attention(dim={dim!r}, heads={spec.heads!r}, window={spec.window!r}, "
                f"use_rope={spec.rope!r}, rope_base={spec.rope_base!r})")
    if isinstance(spec, MLPSpec):
        return _mlp_source(dim, spec.expand, spec.activation)
    if isinstance(spec, MLPChainSpec):
        blocks = ", ".join(f"{name!r}: {_mlp_source(dim, b.expand, b.activation)}"
                           for name, b in spec.blocks.items())
        return f"L.MLPChain({{{blocks}}}, variant={spec.variant!r})"
    raise TypeError(f"no registry entry for module type {type(spec).__name__}")


def _memory_source(spec, dim: int, level, gate: bool | None = None) -> str:
    rule = level.rule
    momentum = getattr(rule, "momentum", 0.0)
    head_dim = dim // spec.heads
    return (f"T.NeuralMemory(dim={dim!r}, heads={spec.heads!r}, kind={spec.memory.kind!r}, "
            f"hidden={hidden_of(head_dim, spec.memory.expand)!r}, conv={spec.conv!r}, "
            f"qk_norm={spec.qk_norm!r}, gate={spec.gate if gate is None else gate!r}, "
            f"chunk={level.period!r}, "
            f"objective={level.objective!r}, lr={_rate(rule.lr)!r}, "
            f"forget={_rate(rule.forget)!r}, momentum={_rate(momentum)!r}, "
            f"max_lr={rule.max_lr!r}, max_momentum={getattr(rule, 'max_momentum', 0.9)!r}, "
            f"rule={rule.type!r}, self_values={level.values == 'self'!r})")


def _rate(value) -> float | None:
    """A rate named by a string is produced by the module per token: None to the runtime."""
    return None if isinstance(value, str) else float(value)


def _selfmod_source(spec, dim: int, memory, projections) -> str:
    head_dim = dim // spec.heads
    main, proj = memory.rule, projections.rule
    return (f"S.SelfModifyingTitans(dim={dim!r}, heads={spec.heads!r}, "
            f"kind={spec.memory.kind!r}, hidden={hidden_of(head_dim, spec.memory.expand)!r}, "
            f"conv={spec.conv!r}, adaptive_q={spec.adaptive_q!r}, gate={spec.gate!r}, "
            f"objective={memory.objective!r}, self_values={memory.values == 'self'!r}, "
            f"chunk={memory.period!r}, proj_chunk={projections.period!r}, "
            f"lr={_rate(main.lr)!r}, forget={_rate(main.forget)!r}, max_lr={main.max_lr!r}, "
            f"proj_lr={_rate(proj.lr)!r}, proj_forget={_rate(proj.forget)!r}, "
            f"proj_max_lr={proj.max_lr!r})")


def _mlp_source(dim: int, expand: float, activation: str) -> str:
    return f"L.MLP(dim={dim!r}, hidden={hidden_of(dim, expand)!r}, activation={activation!r})"


def forward_flops(ownable: Ownable, spec, model: ModelSpec, seq_len: int) -> int:
    """Forward multiply-adds x2 per token for one ownable, summed over layers."""
    d, layers = model.dim, len(ownable.paths)
    if ownable.type == "attention" and ownable.kind == "param":
        return layers * 2 * 4 * d * d
    if ownable.type == "attention":  # the cache: scores and weighted sum over the context
        context = min(spec.window, seq_len) if spec.window else seq_len
        return layers * 2 * 2 * d * (context + 1) // 2
    if ownable.type == "mlp":
        return layers * 2 * 2 * d * hidden_of(d, spec.expand)
    if ownable.type == "neural_memory" and not ownable.memory:  # q, k, v, gate, out
        return layers * 2 * 5 * d * d
    if ownable.type == "neural_memory":  # read, then the gradient (about twice a read)
        head_dim = d // spec.heads
        width = head_dim if spec.memory.kind == "linear" else 2 * hidden_of(head_dim,
                                                                              spec.memory.expand)
        return layers * 3 * 2 * d * width
    if ownable.type == "self_modifying_titans":
        head_dim = d // spec.heads
        width = head_dim if spec.memory.kind == "linear" else 2 * hidden_of(head_dim,
                                                                              spec.memory.expand)
        if ownable.name.endswith(".projections"):  # P memories: read x, k, v, then the gradient
            return layers * (5 if spec.adaptive_q else 4) * 4 * 2 * d * width
        if ownable.name.endswith(".memory"):  # read q, k, v, then the gradient
            return layers * 4 * 2 * d * width
        return layers * 2 * 3 * d * d  # static q, gate, out
    if ownable.type == "mlp_chain":
        block = ownable.name.split(".", 1)[1]
        if block == "mix":
            return 0
        return layers * 2 * 2 * d * hidden_of(d, spec.blocks[block].expand)
    if ownable.name == "embedding":  # tied: the embedding is also the output projection
        return 2 * d * model.vocab if model.tie_embeddings else 0
    if ownable.name == "unembedding":
        return 2 * d * model.vocab
    return 0
