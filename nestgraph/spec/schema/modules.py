"""The network's sections: ``model:`` and the module types of ``modules:``.

The module types form one union, dispatched by ``type``; `register_model` adds a type
defined outside the package (the kinds registry calls it)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BeforeValidator,
    Field,
)

from nestgraph.spec.schema.common import (
    CONV_MAX,
    EXPAND_MAX,
    HEADS_MAX,
    SEQ_LEN_MAX,
    FiniteFloat,
    Identifier,
    Strict,
)


class BlockEntry(Strict):
    """One residual sub-block of a layer: ``x = x + module(norm(x))``."""

    module: Identifier
    residual: bool = True
    norm: Literal["rms", "layer", "none"] = "rms"


def _block_shorthand(value: Any) -> Any:
    if isinstance(value, list):
        return [{"module": v} if isinstance(v, str) else v for v in value]
    return value


class ModelSpec(Strict):
    """The network: byte tokens in, next-byte logits out, `layers` copies of `block`."""

    tokenizer: Literal["bytes"] = "bytes"
    vocab: int = Field(256, ge=2, le=1 << 20)
    dim: int = Field(64, ge=1, le=1 << 16)
    layers: int = Field(2, ge=1, le=1024)
    block: Annotated[list[BlockEntry], BeforeValidator(_block_shorthand)] = Field(min_length=1)
    final_norm: Literal["rms", "layer", "none"] = "rms"
    tie_embeddings: bool = True


# -------------------------------------------------------------------------------- modules


class AttentionSpec(Strict):
    """Causal softmax attention: the non-parametric in-context level (its state is the cache)."""

    type: Literal["attention"]
    heads: int = Field(4, ge=1, le=HEADS_MAX, description="attention heads; they divide model.dim")
    window: int = Field(0, ge=0, le=SEQ_LEN_MAX,
                        description="sliding window in tokens; 0 means the whole sequence")
    rope: bool = True
    rope_base: FiniteFloat = Field(10000.0, gt=0)
    persistent: int = Field(0, ge=0, le=SEQ_LEN_MAX, description="learned persistent memory "
                            "tokens (Titans §3.3) every query attends to, whatever the window")


Activation = Literal["gelu", "silu", "relu"]


_GATED = ("W2 (act(W1 x) * W3 x) instead of W2 act(W1 x); with silu, the SwiGLU of "
          "Llama-style models (what nestgraph convert needs to load one)")


class MLPSpec(Strict):
    """A two-layer MLP ``W2 act(W1 x)`` (gated: ``W2 (act(W1 x) * W3 x)``)."""

    type: Literal["mlp"]
    expand: FiniteFloat = Field(4.0, gt=0, le=EXPAND_MAX)
    activation: Activation = "gelu"
    gated: bool = Field(False, description=_GATED)


class ChainBlockSpec(Strict):
    """One MLP of a continuum memory chain."""

    expand: FiniteFloat = Field(4.0, gt=0, le=EXPAND_MAX)
    activation: Activation = "gelu"
    gated: bool = Field(False, description=_GATED)
    step_size: bool = Field(False, description="its level takes a per-token step size read "
                            "from the block's input (lr: NAME.lr; NL Eq. 71's eta_t)")


class MLPChainSpec(Strict):
    """A chain of MLPs, each of which a level may own (the Continuum Memory System, Eq. 70).

    ``sequential``: each block adds its output to the running input, all initial states learned
    by the outer level. ``independent``: the blocks read the same input, a learned weighted sum
    combines them. ``nested``: chained as in ``sequential``, and each block's level also learns,
    in context, the initial state of the next faster block, which it resets to that state every
    time it updates (NL §7, nested CMS).
    """

    type: Literal["mlp_chain"]
    variant: Literal["sequential", "independent", "nested"] = "sequential"
    blocks: dict[Identifier, ChainBlockSpec] = Field(min_length=1)


class MemoryArchSpec(Strict):
    """The memory's own architecture: a matrix, the residual MLP ``z + W1 silu(W2 z)``, or a
    plain MLP of ``depth`` layers (Titans' depth study; depth 1 is ``linear``)."""

    kind: Literal["mlp", "linear", "plain_mlp"] = "mlp"
    expand: FiniteFloat = Field(2.0, gt=0, le=EXPAND_MAX,
                                description="hidden width of an mlp memory, per head")
    depth: int = Field(2, ge=2, le=4, description="layers of a plain_mlp memory "
                       "(P_L silu(... silu(P_1 z)), no residual)")


class NeuralMemorySpec(Strict):
    """Titans' neural long-term memory (LMM): an associative memory written while reading.

    q, k, v are SiLU projections of the input, each through a short causal depthwise
    convolution, q and k l2-normalised per head; the output is normalised and gated. The
    memory's weights are the state of the level that owns ``NAME.memory``; the module also
    produces per-token rates ``NAME.lr``, ``NAME.forget``, ``NAME.momentum`` that the level's
    rule may use.
    """

    type: Literal["neural_memory"]
    heads: int = Field(4, ge=1, le=HEADS_MAX, description="memory heads; they divide model.dim")
    memory: MemoryArchSpec = MemoryArchSpec()
    conv: int = Field(4, ge=0, le=CONV_MAX,
                      description="causal depthwise convolution window; 0 for none")
    qk_norm: bool = True
    gate: bool = True


class MemoryAsGateSpec(Strict):
    """Titans' MAG: sliding-window attention (the precise short-term memory) gated by the neural
    memory (the fading long-term one): ``out = norm(SWA(x)) * sigmoid(norm(M(x)))``.

    Its states: ``NAME.attn`` (attention weights), ``NAME.cache`` (the window's keys and
    values), ``NAME`` (the memory's projections), ``NAME.memory`` (the memory itself).
    """

    type: Literal["memory_as_gate"]
    heads: int = Field(4, ge=1, le=HEADS_MAX, description="heads; they divide model.dim")
    window: int = Field(64, ge=1, le=SEQ_LEN_MAX,
                        description="sliding-window attention span in tokens")
    persistent: int = Field(0, ge=0, le=SEQ_LEN_MAX, description="learned persistent memory "
                            "tokens (Titans §3.3) the attention always sees")
    memory: MemoryArchSpec = MemoryArchSpec()
    conv: int = Field(4, ge=0, le=CONV_MAX)
    qk_norm: bool = True


class MemoryAsContextSpec(Strict):
    """Titans' MAC: the sequence in segments; each segment recalls from the neural memory at its
    own queries, attends causally over [persistent ‖ recollection ‖ segment], then writes the
    memory from the attention output, which the memory's read of it gates.

    Its states: ``NAME.attn`` (attention weights), ``NAME.cache`` (the segment's keys and
    values), ``NAME`` (the memory's projections and the gate's norms), ``NAME.memory`` (the
    memory itself, owned by a memory level whose period divides ``segment``).
    """

    type: Literal["memory_as_context"]
    heads: int = Field(4, ge=1, le=HEADS_MAX, description="heads; they divide model.dim")
    segment: int = Field(64, ge=1, le=SEQ_LEN_MAX, description="segment length in tokens: "
                         "attention's span; the memory carries one segment into the next")
    persistent: int = Field(0, ge=0, le=SEQ_LEN_MAX, description="learned persistent memory "
                            "tokens (Titans §3.3) every query of a segment sees")
    memory: MemoryArchSpec = MemoryArchSpec()
    conv: int = Field(4, ge=0, le=CONV_MAX)
    qk_norm: bool = True


class SelfModifyingTitansSpec(Strict):
    """The self-modifying Titans (NL §8.1, Eqs. 79-93): keys, values, the learning rate and the
    retention (and, with ``adaptive_q``, the queries) come from in-context memories, each
    written by DGD while the sequence is read; the main memory is read at the queries.

    Its states: ``NAME`` (input convolution, static query projection, rate read-outs, output
    norm, gate and projection), ``NAME.memory`` (the main memory) and ``NAME.projections`` (the
    projection memories), the last two each owned by a memory level with rule ``dgd``. It
    produces the per-token rates ``NAME.lr`` and ``NAME.forget`` that those levels may use.
    """

    type: Literal["self_modifying_titans"]
    heads: int = Field(4, ge=1, le=HEADS_MAX, description="heads; they divide model.dim")
    memory: MemoryArchSpec = MemoryArchSpec()
    conv: int = Field(4, ge=0, le=CONV_MAX,
                      description="causal depthwise convolution window on the input")
    adaptive_q: bool = Field(False, description="queries from a memory (M_q) instead of a "
                             "static projection; the paper's ablation finds static q no worse")
    adaptive_k: bool = Field(True, description="false: M_k is never written in context, a "
                             "static projection the outer level learns (NL Table 6)")
    adaptive_v: bool = Field(True, description="false: M_v is never written in context, a "
                             "static projection the outer level learns (NL Table 6)")
    gate: bool = True


# The module types a spec may name; `sections.register_model` adds one from outside.
MODULE_MODELS: list[type[Strict]] = [AttentionSpec, MLPSpec, MLPChainSpec, NeuralMemorySpec,
                                     MemoryAsGateSpec, MemoryAsContextSpec,
                                     SelfModifyingTitansSpec]


def module_union() -> Any:
    """One module entry: the model whose ``type`` tag the entry names."""
    return Annotated[Union[tuple(MODULE_MODELS)], Field(discriminator="type")]  # noqa: UP007


ModuleSpec = module_union()

