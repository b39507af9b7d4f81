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
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

SPEC_VERSION = 1

# Value bounds (documented in docs/spec.md, "Value bounds"). Sizes are bounded so that every
# size the compiler multiplies stays an ordinary integer; whether a model of that size fits in
# memory is the compiler's estimate, not the schema's.
NAME_MAX = 64  # characters of a name: names become identifiers, attributes and folder names
HEADS_MAX = 1024
CONV_MAX = 256  # a causal convolution's window, in tokens
EXPAND_MAX = 64.0  # an MLP's hidden width, as a multiple of its input width
SEQ_LEN_MAX = 1 << 20  # tokens of a training sequence; also the longest attention window
BATCH_MAX = 1 << 16
STEPS_MAX = 10**9  # steps, and every count of steps (warmup, log_every, ...)
PERIOD_MAX = 10**9  # the count of a level's period
SEED_LIMIT = 1 << 64  # seeds are 64-bit unsigned integers, as torch's generators take

# Every float of a spec is finite: YAML's .inf and .nan, 1e400, and a string such as 'inf'
# where a number goes are refused here, once for every field.
FiniteFloat = Annotated[float, AllowInfNan(False)]

_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


def _check_identifier(name: str) -> str:
    # Names become Python identifiers and attribute names in program.py, so they are held to
    # a strict pattern: lower-case, no leading underscore (so no dunders), no keywords.
    if len(name) > NAME_MAX:
        raise PydanticCustomError(
            "name_too_long",
            "a name is at most {limit} characters; '{start}...' has {length}",
            {"limit": NAME_MAX, "start": name[:24], "length": len(name),
             "hint": f"shorten it to {NAME_MAX} characters or fewer"})
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


def _interval(low: float, high: float | None, low_open: bool, high_open: bool) -> str:
    """``[0, 1)``, ``(0, inf)``: the mathematician's notation for a range of numbers."""
    upper = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
    return f"{'(' if low_open else '['}{low:g}, {upper}"


def rate(low: float = 0.0, high: float | None = None, *, low_open: bool = False,
         high_open: bool = False):
    """A rate: a finite number in the given range, or the name of a value a module produces
    per token (``mem.lr``)."""
    span = _interval(low, high, low_open, high_open)

    def check(value: Any, info: ValidationInfo) -> Any:
        field = info.field_name or "rate"
        if isinstance(value, str):
            if _REF.fullmatch(value):
                return value
            try:
                float(value)
            except ValueError:
                hint = "write a number, or module.value for a rate the module produces"
            else:
                hint = f"write the number unquoted, a finite value in {span}"
            raise PydanticCustomError(
                "rate_reference",
                "'{value}' is neither a number nor a reference of the form module.value",
                {"value": value, "hint": hint})
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            raise PydanticCustomError(
                "rate_range", "'{field}' must be a finite number in {span}, not {value}",
                {"field": field, "value": repr(value), "span": span,
                 "hint": f"use a finite number in {span}, or module.value for a rate the "
                         "module produces"})
        return value

    number: dict[str, Any] = {"type": "number", ("exclusiveMinimum" if low_open else "minimum"): low}
    if high is not None:
        number["exclusiveMaximum" if high_open else "maximum"] = high
    return Annotated[float | str, AfterValidator(check),
                     WithJsonSchema({"anyOf": [number, {"type": "string", "pattern": _REF.pattern}]})]


# A learning rate; a retention or forgetting share; a momentum (1 would never forget).
Rate = rate(0.0, low_open=True)
Share = rate(0.0, 1.0)
MomentumRate = rate(0.0, 1.0, high_open=True)


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
    heads: int = Field(4, ge=1, le=HEADS_MAX, description="attention heads; they divide model.dim")
    window: int = Field(0, ge=0, le=SEQ_LEN_MAX,
                        description="sliding window in tokens; 0 means the whole sequence")
    rope: bool = True
    rope_base: FiniteFloat = Field(10000.0, gt=0)


Activation = Literal["gelu", "silu", "relu"]


class MLPSpec(Strict):
    """A two-layer MLP ``W2 act(W1 x)``."""

    type: Literal["mlp"]
    expand: FiniteFloat = Field(4.0, gt=0, le=EXPAND_MAX)
    activation: Activation = "gelu"


class ChainBlockSpec(Strict):
    """One MLP of a continuum memory chain."""

    expand: FiniteFloat = Field(4.0, gt=0, le=EXPAND_MAX)
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
    expand: FiniteFloat = Field(2.0, gt=0, le=EXPAND_MAX,
                                description="hidden width of the mlp memory, per head")


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
        digits, unit = m.group(1), m.group(2)
        count = int(digits) if len(digits) <= 12 else PERIOD_MAX + 1
        if count < 1:
            raise ValueError("a period must be at least 1")
        if count > PERIOD_MAX:
            raise PydanticCustomError(
                "period_too_long", "a period is at most {limit} {unit}s",
                {"limit": f"{PERIOD_MAX:,}", "unit": unit.rstrip("s"),
                 "hint": "a level that updates this rarely never updates in a run: use a "
                         "shorter period"})
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
    momentum: FiniteFloat = Field(0.0, ge=0, lt=1)
    weight_decay: FiniteFloat = Field(0.0, ge=0)
    clip: FiniteFloat = Field(0.0, ge=0, description="max gradient norm; 0 disables clipping")


# Adam's decay rate of a moment: 1 would never forget (and divide by zero in its correction).
Beta = Annotated[FiniteFloat, Field(ge=0, lt=1)]


class AdamW(Strict):
    """AdamW with linear warmup and cosine (or constant) decay: the usual outer level."""

    type: Literal["adamw"]
    lr: FiniteFloat = Field(gt=0)
    betas: tuple[Beta, Beta] = (0.9, 0.95)
    eps: FiniteFloat = Field(1e-8, gt=0)
    weight_decay: FiniteFloat = Field(0.1, ge=0)
    warmup: int = Field(0, ge=0, le=STEPS_MAX, description="warmup steps")
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: FiniteFloat = Field(0.1, ge=0, le=1)
    clip: FiniteFloat = Field(1.0, ge=0, description="max gradient norm; 0 disables clipping")


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
    forget: Share = 0.0
    momentum: MomentumRate = 0.0
    max_lr: FiniteFloat = Field(0.005, gt=0)
    max_momentum: FiniteFloat = Field(0.9, ge=0, lt=1)


class DGD(Strict):
    """Delta Gradient Descent with weight decay (NL Eq. 88):
    ``M_t = M_{t-1} ((1 - forget_t) I - lr_t k k^T) - lr_t grad``, the decay along the key
    DGD's adaptive forgetting. No momentum (Eq. 88 has none).

    Each rate is a constant or a value the module produces per token (``hope.lr``,
    ``hope.forget``); a produced ``lr`` is ``max_lr`` times a sigmoid.
    """

    type: Literal["dgd"]
    lr: Rate
    forget: Share = 0.0
    max_lr: FiniteFloat = Field(0.01, gt=0)


class Memories(Strict):
    """A step level updated by the optimizer levels that read its gradients (NL §4): the
    update is ``-lr * sum_k weight_k out_k``, divided by ``sqrt(V) + eps`` when one of them is
    a second-moment memory V. Each optimizer level is a memory with its own period."""

    type: Literal["memories"]
    lr: FiniteFloat = Field(gt=0)
    weight_decay: FiniteFloat = Field(0.0, ge=0, description="decoupled, as in AdamW")
    eps: FiniteFloat = Field(1e-8, gt=0)
    warmup: int = Field(0, ge=0, le=STEPS_MAX, description="warmup steps")
    schedule: Literal["cosine", "constant"] = "constant"
    min_lr_ratio: FiniteFloat = Field(0.1, ge=0, le=1)
    clip: FiniteFloat = Field(0.0, ge=0, description="max gradient norm; 0 disables clipping")


class Momentum(Strict):
    """An optimizer level's linear memory of gradients (NL §4.2-4.5): momentum.

    With objective ``dot`` it is value-less (``plain``: m = beta m + phi(g), SGD momentum;
    ``ema``; ``accumulate``: m = m + beta phi(g), M3 as printed); with ``l2`` it is delta
    momentum, which first forgets what it holds along the new gradient (by `delta_strength`).
    phi(g) = sign(g)|g|^power (higher-order feature maps); `output` is the read-out map:
    ``newton_schulz`` (M3), ``muon`` (Newton-Schulz scaled by shape, Muon), ``sign``.
    """

    type: Literal["momentum"]
    beta: FiniteFloat = Field(0.9, ge=0, le=1, description="retention (accumulate: write scale)")
    mode: Literal["plain", "ema", "accumulate"] = "plain"
    power: FiniteFloat = Field(1.0, ge=0, le=8, description="feature map sign(g)|g|^power")
    output: Literal["identity", "sign", "newton_schulz", "muon"] = "identity"
    ns_steps: int = Field(5, ge=1, le=50)
    nesterov: bool = False
    delta_strength: FiniteFloat = Field(1.0, ge=0, le=1, description="objective l2 only")
    weight: FiniteFloat = Field(1.0, description="its share of the update")


class DeepMomentum(Strict):
    """DMGD (NL Eq. 50): the momentum is an MLP trained online, by gradient descent with
    retention `alpha` and step `inner_lr`, on its own L2 objective over the gradient stream
    (predict each gradient from the one before); the update is the gradient plus its read-out."""

    type: Literal["deep_momentum"]
    hidden: int = Field(16, ge=1, le=1024)
    inner_lr: FiniteFloat = Field(0.05, gt=0)
    alpha: FiniteFloat = Field(0.99, ge=0, le=1)
    weight: FiniteFloat = Field(1.0, description="its share of the update")


class SecondMoment(Strict):
    """A memory of squared gradients: the preconditioner V of Adam and M3 (``ema`` with
    Adam's bias correction, or ``accumulate`` as M3's Algorithm 1 prints it)."""

    type: Literal["second_moment"]
    beta: FiniteFloat = Field(0.999, ge=0, le=1)
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
    steps: int = Field(200, ge=0, le=STEPS_MAX)
    batch: int = Field(8, ge=1, le=BATCH_MAX)
    seq_len: int = Field(128, ge=2, le=SEQ_LEN_MAX)
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)
    precision: Literal["fp32", "bf16", "fp64"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
    log_every: int = Field(10, ge=1, le=STEPS_MAX)
    eval_every: int = Field(50, ge=0, le=STEPS_MAX, description="0 evaluates only at the end")
    eval_batches: int = Field(8, ge=1, le=BATCH_MAX)
    checkpoint_every: int = Field(100, ge=0, le=STEPS_MAX,
                                  description="0 checkpoints only at the end")
    keep_checkpoints: int = Field(3, ge=1, le=BATCH_MAX)
    threads: Literal["auto"] | Annotated[int, Field(ge=1, le=4096, strict=True)] = Field(
        "auto", description="CPU threads for torch; 'auto' takes the cores not busy with "
        "other work (the core count minus the 1-minute load average, at least 1)")
    loggers: Annotated[list[Literal["jsonl", "csv", "tensorboard"]],
                       AfterValidator(_check_loggers)] = Field(
        ["jsonl", "csv"], description="where metrics go: metrics.jsonl (always needed: resuming "
        "and plot read it), metrics.csv, TensorBoard event files under tensorboard/")


class DataSpec(Strict):
    source: str = Field("stdlib", description="'stdlib' (the embedded corpus), a file or a folder")
    heldout: FiniteFloat = Field(0.05, gt=0, lt=1)
    max_bytes: int = Field(4_000_000, ge=1024, le=1 << 40)
    heldout_source: str | None = Field(
        None, description="a separate file or folder to evaluate on; none: the held-out part "
        "is the last `heldout` fraction of the training data")
    order: Literal["random", "stream"] = Field(
        "random", description="'random': independent random windows each step; 'stream': "
        "lane i of the batch reads its own contiguous part of the text, step after step, so "
        "stream-lifetime levels see a continuing context")


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
