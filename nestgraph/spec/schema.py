"""The validated spec: frozen pydantic models, one per section of a spec file.

Only *local* rules live here (types, ranges, tags, the shape of a name). Everything that
relates two entries (a level owning a module that exists, periods that divide, flows without
cycles) is a compiler pass, where the whole graph is in view.

Shorthands a person types (``every: 16 tokens``, ``context: gradients of outer``,
``objective: next_token``) are normalised here, so that ``spec.resolved.yaml`` always shows
the canonical spelling.
"""

from __future__ import annotations

import keyword
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

SPEC_VERSION = 1

_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


def _check_identifier(name: str) -> str:
    # Names become Python identifiers and attribute names in program.py, so they are held to
    # a strict pattern: lower-case, no leading underscore (so no dunders), no keywords.
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


def _check_rate(value: Any) -> Any:
    if isinstance(value, str):
        if not _REF.fullmatch(value):
            raise ValueError(
                f"'{value}' is neither a number nor a reference of the form module.value"
            )
        return value
    return value


Rate = Annotated[float | str, AfterValidator(_check_rate)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------- model


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
    heads: int = Field(4, ge=1)
    window: int = Field(0, ge=0, description="sliding window in tokens; 0 means the whole sequence")
    rope: bool = True
    rope_base: float = Field(10000.0, gt=0)


Activation = Literal["gelu", "silu", "relu"]


class MLPSpec(Strict):
    """A two-layer MLP ``W2 act(W1 x)``."""

    type: Literal["mlp"]
    expand: float = Field(4.0, gt=0)
    activation: Activation = "gelu"


class ChainBlockSpec(Strict):
    """One MLP of a continuum memory chain."""

    expand: float = Field(4.0, gt=0)
    activation: Activation = "gelu"


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
    """The memory's own architecture: a matrix, or the residual MLP ``z + W1 silu(W2 z)``."""

    kind: Literal["mlp", "linear"] = "mlp"
    expand: float = Field(2.0, gt=0, description="hidden width of the mlp memory, per head")


class NeuralMemorySpec(Strict):
    """Titans' neural long-term memory (LMM): an associative memory written while reading.

    q, k, v are SiLU projections of the input, each through a short causal depthwise
    convolution, q and k l2-normalised per head; the output is normalised and gated. The
    memory's weights are the state of the level that owns ``NAME.memory``; the module also
    produces per-token rates ``NAME.lr``, ``NAME.forget``, ``NAME.momentum`` that the level's
    rule may use.
    """

    type: Literal["neural_memory"]
    heads: int = Field(4, ge=1)
    memory: MemoryArchSpec = MemoryArchSpec()
    conv: int = Field(4, ge=0, description="causal depthwise convolution window; 0 for none")
    qk_norm: bool = True
    gate: bool = True


class MemoryAsGateSpec(Strict):
    """Titans' MAG: sliding-window attention (the precise short-term memory) gated by the neural
    memory (the fading long-term one): ``out = norm(SWA(x)) * sigmoid(norm(M(x)))``.

    Its states: ``NAME.attn`` (attention weights), ``NAME.cache`` (the window's keys and
    values), ``NAME`` (the memory's projections), ``NAME.memory`` (the memory itself).
    """

    type: Literal["memory_as_gate"]
    heads: int = Field(4, ge=1)
    window: int = Field(64, ge=1, description="sliding-window attention span in tokens")
    memory: MemoryArchSpec = MemoryArchSpec()
    conv: int = Field(4, ge=0)
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
    heads: int = Field(4, ge=1)
    memory: MemoryArchSpec = MemoryArchSpec()
    conv: int = Field(4, ge=0, description="causal depthwise convolution window on the input")
    adaptive_q: bool = Field(False, description="queries from a memory (M_q) instead of a "
                             "static projection; the paper's ablation finds static q no worse")
    gate: bool = True


ModuleSpec = Annotated[AttentionSpec | MLPSpec | MLPChainSpec | NeuralMemorySpec
                       | MemoryAsGateSpec | SelfModifyingTitansSpec, Field(discriminator="type")]

# --------------------------------------------------------------------------------- levels

_PERIOD = re.compile(r"^\s*(\d+)\s*(tokens?|steps?)\s*$")


def _normalise_period(value: Any) -> Any:
    if isinstance(value, str):
        m = _PERIOD.match(value)
        if not m:
            raise ValueError(
                f"'{value}' is not a period: write a count and a unit, e.g. '16 tokens' or '1 step'"
            )
        count, unit = int(m.group(1)), m.group(2)
        if count < 1:
            raise ValueError("a period must be at least 1")
        unit = "token" if unit.startswith("token") else "step"
        return f"{count} {unit}{'s' if count != 1 else ''}"
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"a period needs a unit: write '{value} tokens' or '{value} steps'")
    raise ValueError("a period is written as a count and a unit, e.g. '16 tokens' or '1 step'")


Period = Annotated[str, BeforeValidator(_normalise_period)]

_FLOW = re.compile(r"^(tokens|corpus|(output|gradients) of [a-z][a-z0-9_]*)$")


def _normalise_context(value: Any) -> Any:
    if isinstance(value, str):
        text = " ".join(value.split())
        if not _FLOW.fullmatch(text):
            raise ValueError(
                f"'{value}' is not a context flow: use 'tokens', 'corpus', "
                "'output of LEVEL' or 'gradients of LEVEL'"
            )
        return text
    raise ValueError("a context flow is a string such as 'tokens' or 'corpus'")


ContextFlow = Annotated[str, BeforeValidator(_normalise_context)]


def _type_shorthand(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class NextToken(Strict):
    """The task loss: cross-entropy of the next byte. Its gradient is the teach signal."""

    type: Literal["next_token"]


class NadarayaWatson(Strict):
    """Softmax attention's objective, solved in closed form over the cache (NL §5)."""

    type: Literal["nadaraya_watson"]


Values = Literal["given", "self"]
_VALUES = ("whose values the memory writes: the module's v_t (given), or its own reading of "
           "them, M(v_t) (self; NL Eqs. 83-85)")


class L2(Strict):
    """Associative regression: ``||M(k) - v||^2`` (Titans' loss; NL Eq. 88)."""

    type: Literal["l2"]
    values: Values = Field("given", description=_VALUES)


class Dot(Strict):
    """Dot-product similarity: ``-<M(k), v>`` (Hebbian memories, linear attention)."""

    type: Literal["dot"]
    values: Values = Field("given", description=_VALUES)


Objective = Annotated[
    Annotated[NextToken | NadarayaWatson | L2 | Dot, Field(discriminator="type")],
    BeforeValidator(_type_shorthand),
]


class GD(Strict):
    """Gradient descent. In context: Eq. 71's summed chunk gradient; between steps: SGD."""

    type: Literal["gd"]
    lr: Rate
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    clip: float = Field(0.0, ge=0, description="max gradient norm; 0 disables clipping")


class AdamW(Strict):
    """AdamW with linear warmup and cosine (or constant) decay: the usual outer level."""

    type: Literal["adamw"]
    lr: float = Field(gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    warmup: int = Field(0, ge=0, description="warmup steps")
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    clip: float = Field(1.0, ge=0, description="max gradient norm; 0 disables clipping")


class ClosedForm(Strict):
    """The level's objective is solved exactly at every update (non-parametric levels)."""

    type: Literal["closed_form"]


class Titans(Strict):
    """Surprise with momentum and forgetting (Titans Eqs. 13-14):
    ``S_t = momentum_t S_{t-1} - lr_t grad``, ``M_t = (1 - forget_t) M_{t-1} + S_t``.

    Each rate is a constant or a value the memory module produces per token
    (``mem.lr``, ``mem.forget``, ``mem.momentum``). A produced ``lr`` is ``max_lr`` times a
    sigmoid and a produced ``momentum`` is ``max_momentum`` times one, so the inner steps stay
    bounded however the projections move; the compiler checks that the bound is a stable one.
    """

    type: Literal["titans"]
    lr: Rate
    forget: Rate = 0.0
    momentum: Rate = 0.0
    max_lr: float = Field(0.005, gt=0)
    max_momentum: float = Field(0.9, ge=0, lt=1)


class DGD(Strict):
    """Delta Gradient Descent with weight decay (NL Eq. 88):
    ``M_t = M_{t-1} ((1 - forget_t) I - lr_t k k^T) - lr_t grad``, the decay along the key
    DGD's adaptive forgetting. No momentum (Eq. 88 has none).

    Each rate is a constant or a value the module produces per token (``hope.lr``,
    ``hope.forget``); a produced ``lr`` is ``max_lr`` times a sigmoid.
    """

    type: Literal["dgd"]
    lr: Rate
    forget: Rate = 0.0
    max_lr: float = Field(0.01, gt=0)


class Memories(Strict):
    """A step level updated by the optimizer levels that read its gradients (NL §4): the
    update is ``-lr * sum_k weight_k out_k``, divided by ``sqrt(V) + eps`` when one of them is
    a second-moment memory V. Each optimizer level is a memory with its own period."""

    type: Literal["memories"]
    lr: float = Field(gt=0)
    weight_decay: float = Field(0.0, ge=0, description="decoupled, as in AdamW")
    eps: float = Field(1e-8, gt=0)
    warmup: int = Field(0, ge=0, description="warmup steps")
    schedule: Literal["cosine", "constant"] = "constant"
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    clip: float = Field(0.0, ge=0, description="max gradient norm; 0 disables clipping")


class Momentum(Strict):
    """An optimizer level's linear memory of gradients (NL §4.2-4.5): momentum.

    With objective ``dot`` it is value-less (``plain``: m = beta m + phi(g), SGD momentum;
    ``ema``; ``accumulate``: m = m + beta phi(g), M3 as printed); with ``l2`` it is delta
    momentum, which first forgets what it holds along the new gradient (by `delta_strength`).
    phi(g) = sign(g)|g|^power (higher-order feature maps); `output` is the read-out map:
    ``newton_schulz`` (M3), ``muon`` (Newton-Schulz scaled by shape, Muon), ``sign``.
    """

    type: Literal["momentum"]
    beta: float = Field(0.9, ge=0, le=1, description="retention (accumulate: write scale)")
    mode: Literal["plain", "ema", "accumulate"] = "plain"
    power: float = Field(1.0, ge=0, description="feature map sign(g)|g|^power")
    output: Literal["identity", "sign", "newton_schulz", "muon"] = "identity"
    ns_steps: int = Field(5, ge=1, le=50)
    nesterov: bool = False
    delta_strength: float = Field(1.0, ge=0, le=1, description="objective l2 only")
    weight: float = Field(1.0, description="its share of the update")


class DeepMomentum(Strict):
    """DMGD (NL Eq. 50): the momentum is an MLP trained online, by gradient descent with
    retention `alpha` and step `inner_lr`, on its own L2 objective over the gradient stream
    (predict each gradient from the one before); the update is the gradient plus its read-out."""

    type: Literal["deep_momentum"]
    hidden: int = Field(16, ge=1, le=1024)
    inner_lr: float = Field(0.05, gt=0)
    alpha: float = Field(0.99, ge=0, le=1)
    weight: float = Field(1.0, description="its share of the update")


class SecondMoment(Strict):
    """A memory of squared gradients: the preconditioner V of Adam and M3 (``ema`` with
    Adam's bias correction, or ``accumulate`` as M3's Algorithm 1 prints it)."""

    type: Literal["second_moment"]
    beta: float = Field(0.999, ge=0, le=1)
    mode: Literal["ema", "accumulate"] = "ema"


OPTIMIZER_RULES = ("momentum", "deep_momentum", "second_moment")

Rule = Annotated[
    Annotated[GD | AdamW | ClosedForm | Titans | DGD | Memories | Momentum | DeepMomentum
              | SecondMoment, Field(discriminator="type")],
    BeforeValidator(_type_shorthand),  # `rule: closed_form` is {type: closed_form}
]


def _owns_shorthand(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Level(Strict):
    """One optimisation problem: what it owns, how often, from what, towards what, by what rule."""

    name: Identifier
    owns: Annotated[list[str], BeforeValidator(_owns_shorthand)]
    every: Period
    context: ContextFlow
    objective: Objective
    rule: Rule
    lifetime: Literal["sequence", "stream", "run"]
    meta: Literal["second_order", "first_order"] = Field(
        "second_order",
        description="how slower levels learn this level's initial state: backprop through its "
        "in-context updates (second_order) or with that gradient stopped (first_order)",
    )


# ---------------------------------------------------------------------------- train, data


def _check_loggers(names: list[str]) -> list[str]:
    if "jsonl" not in names:
        raise ValueError("train.loggers must include 'jsonl': resuming a run and `nestgraph "
                         "plot` read metrics.jsonl")
    if len(set(names)) != len(names):
        raise ValueError("train.loggers names a logger twice")
    return names


class TrainSpec(Strict):
    steps: int = Field(200, ge=0)
    batch: int = Field(8, ge=1)
    seq_len: int = Field(128, ge=2)
    seed: int = 0
    precision: Literal["fp32", "bf16", "fp64"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(50, ge=0, description="0 evaluates only at the end")
    eval_batches: int = Field(8, ge=1)
    checkpoint_every: int = Field(100, ge=0, description="0 checkpoints only at the end")
    keep_checkpoints: int = Field(3, ge=1)
    threads: Literal["auto"] | Annotated[int, Field(ge=1, strict=True)] = Field(
        "auto", description="CPU threads for torch; 'auto' takes the cores not busy with "
        "other work (the core count minus the 1-minute load average, at least 1)")
    loggers: Annotated[list[Literal["jsonl", "csv", "tensorboard"]],
                       AfterValidator(_check_loggers)] = Field(
        ["jsonl", "csv"], description="where metrics go: metrics.jsonl (always needed: resuming "
        "and plot read it), metrics.csv, TensorBoard event files under tensorboard/")


class DataSpec(Strict):
    source: str = Field("stdlib", description="'stdlib' (the embedded corpus), a file or a folder")
    heldout: float = Field(0.05, gt=0, lt=1)
    max_bytes: int = Field(4_000_000, ge=1024)
    heldout_source: str | None = Field(
        None, description="a separate file or folder to evaluate on; none: the held-out part "
        "is the last `heldout` fraction of the training data")


class Spec(Strict):
    nestgraph: Literal[1] = Field(description="spec format version")
    name: Identifier
    about: str = ""
    model: ModelSpec
    modules: dict[Identifier, ModuleSpec] = Field(min_length=1)
    levels: list[Level] = Field(min_length=1)
    train: TrainSpec = TrainSpec()
    data: DataSpec = DataSpec()


def period_of(level: Level) -> tuple[int, str]:
    """``'16 tokens'`` -> ``(16, 'token')``."""
    count, unit = level.every.split()
    return int(count), unit.rstrip("s")


def context_source(level: Level) -> tuple[str, str]:
    """``'gradients of outer'`` -> ``('gradients', 'outer')``; ``'tokens'`` -> ``('tokens', '')``."""
    words = level.context.split()
    return (words[0], words[2]) if len(words) == 3 else (words[0], "")
