"""A level: its period, context flow, objective and rule (the rules form one union by ``type``)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BeforeValidator,
    Field,
)
from pydantic_core import PydanticCustomError

from nestgraph.spec.schema.common import (
    PERIOD_MAX,
    STEPS_MAX,
    FiniteFloat,
    Identifier,
    MomentumRate,
    Rate,
    Share,
    Strict,
)

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
    max_lr: FiniteFloat = Field(0.01, gt=0, description="the largest step when the module "
                                "produces the lr per token (lr: module.lr)")


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
    """DMGD (NL Eq. 50): the momentum is a residual MLP whose weights hold the past gradients,
    trained online (one gradient step per write, retention `alpha`, the hidden layers' step
    `inner_lr`) on the level's objective: ``dot`` (value-less) or ``l2`` (forgetting along each
    new gradient by `delta_strength`). Linear (``hidden: 0``) it is momentum, or delta momentum."""

    type: Literal["deep_momentum"]
    hidden: int = Field(16, ge=0, le=1024, description="0: the linear memory (momentum)")
    inner_lr: FiniteFloat = Field(0.1, ge=0)
    alpha: FiniteFloat = Field(0.9, ge=0, le=1, description="retention (momentum's beta)")
    delta_strength: FiniteFloat = Field(1.0, ge=0, le=1, description="objective l2 only")
    weight: FiniteFloat = Field(1.0, description="its share of the update")


class DeepGain(Strict):
    """An online-trained element-wise gain curve on the gradient: a small MLP shared by a
    tensor's coordinates maps each coordinate (at unit scale) to a number added to it; trained
    by L2 regression of each gradient on the one before (retention `alpha`, step `inner_lr`).
    It keeps no history of the gradients: the direction is a function of the current one."""

    type: Literal["deep_gain"]
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


# The rules a level may name; `sections.register_model` adds one from outside.
RULE_MODELS: list[type[Strict]] = [GD, AdamW, ClosedForm, Titans, DGD, Memories, Momentum,
                                   DeepMomentum, DeepGain, SecondMoment]


def rule_union() -> Any:
    """A level's rule: the model whose ``type`` tag the rule names."""
    return Annotated[Union[tuple(RULE_MODELS)], Field(discriminator="type")]  # noqa: UP007


Rule = Annotated[
    rule_union(),
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
    meta: Literal["second_order", "truncated", "first_order"] = Field(
        "second_order",
        description="how slower levels learn this level's initial state: backprop through its "
        "in-context updates (second_order), through them but only inside the level's own "
        "modules, the error reaching their outputs held fixed (truncated), or with that "
        "gradient stopped (first_order)",
    )


# ---------------------------------------------------------------------------- train, data


