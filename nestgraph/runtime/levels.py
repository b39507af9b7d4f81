"""Levels at run time: plain descriptions (written out by the compiler) and their update rules.

A level is one of four kinds:

* ``nonparametric``: solved in closed form inside the forward pass (softmax attention's cache).
* ``in_context``: owns fast weights, updated every ``period`` tokens while a sequence is read,
  from the gradient of its objective summed over the tokens since its last update (NL Eq. 71).
* ``memory``: owns an associative memory that its module writes every ``period`` tokens inside
  the forward pass, by its own objective (``l2``, ``dot``) and rule (Titans, DGD).
* ``step``: owns ordinary weights, updated every ``period`` training steps by a torch optimizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from nestgraph.periods import in_tokens, nesting_violations, never_updates


@dataclass(frozen=True)
class GDRule:
    """Gradient descent with optional momentum, weight decay and norm clipping.

    ``lr`` named by a string is produced per token by the module (NL Eq. 71's ``η_t``): each
    token's gradient is weighted by ``sigmoid(.)`` in [0, 1] and the step is ``max_lr``.
    """

    lr: float | str
    momentum: float = 0.0
    weight_decay: float = 0.0
    clip: float = 0.0
    max_lr: float = 0.01

    @property
    def scale(self) -> float:
        """The step the summed (weighted) gradient is taken with."""
        return self.max_lr if isinstance(self.lr, str) else self.lr

    def optimizer(self, level: LevelDef, named: dict,
                  schedule: tuple[LevelDef, ...]) -> torch.optim.Optimizer:
        """Its torch optimizer over a step level's parameters (by name)."""
        return torch.optim.SGD(list(named.values()), lr=self.lr, momentum=self.momentum,
                               weight_decay=self.weight_decay, foreach=False)


@dataclass(frozen=True)
class AdamWRule:
    """AdamW with linear warmup, then cosine decay to ``min_lr_ratio * lr`` (or constant)."""

    lr: float
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    warmup: int = 0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    clip: float = 1.0

    def optimizer(self, level: LevelDef, named: dict,
                  schedule: tuple[LevelDef, ...]) -> torch.optim.Optimizer:
        """Its torch optimizer over a step level's parameters (by name)."""
        params = list(named.values())
        # Decay matrices only: norms' gains and 1-D mixing weights are not shrunk towards 0.
        decay = [p for p in params if p.dim() >= 2]
        other = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": self.weight_decay},
                  {"params": other, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.lr, betas=self.betas, eps=self.eps, foreach=False)


@dataclass(frozen=True)
class TitansRule:
    """Surprise momentum and forgetting; applied by the memory module inside its forward pass.

    A rate given as a string is produced per token by the module (recorded here for the plan).
    """

    tag: ClassVar[str] = "titans"  # how the memory module names the rule it applies
    lr: float | str
    forget: float | str = 0.0
    momentum: float | str = 0.0
    max_lr: float = 0.005
    max_momentum: float = 0.9


@dataclass(frozen=True)
class DGDRule:
    """Delta Gradient Descent with weight decay (NL Eq. 88); applied inside the forward pass."""

    tag: ClassVar[str] = "dgd"
    lr: float | str
    forget: float | str = 0.0
    max_lr: float = 0.01


@dataclass(frozen=True)
class MemoriesRule:
    """A step level updated from the memories of its gradients (its optimizer levels)."""

    lr: float
    weight_decay: float = 0.0
    eps: float = 1e-8
    warmup: int = 0
    schedule: str = "constant"
    min_lr_ratio: float = 0.1
    clip: float = 0.0

    def optimizer(self, level: LevelDef, named: dict,
                  schedule: tuple[LevelDef, ...]) -> torch.optim.Optimizer:
        """Its torch optimizer over a step level's parameters (by name)."""
        from nestgraph.optim.composed import ComposedMemories

        # Newton-Schulz read-outs orthogonalise the hidden weight matrices only, as Muon is
        # used: an embedding's rows for bytes not in the batch, or a memory's initial state
        # with a tiny gradient, would otherwise get full-size steps out of nothing.
        def hidden_matrix(name: str, p: torch.nn.Parameter) -> bool:
            return p.dim() == 2 and not name.startswith("embed")

        hidden = [p for n, p in named.items() if hidden_matrix(n, p)]
        other = [p for n, p in named.items() if not hidden_matrix(n, p)]
        groups = [{"params": hidden, "orthogonalize": True},
                  {"params": other, "orthogonalize": False}]
        return ComposedMemories([g for g in groups if g["params"]], self.lr,
                                memory_defs(level, schedule), weight_decay=self.weight_decay,
                                eps=self.eps)


@dataclass(frozen=True)
class MomentumRule:
    """An optimizer level's linear memory of gradients (nestgraph.optim.composed)."""

    memory_kind: ClassVar[str] = "momentum"  # its memory in nestgraph.optim.composed

    beta: float = 0.9
    mode: str = "plain"
    power: float = 1.0
    output: str = "identity"
    ns_steps: int = 5
    nesterov: bool = False
    delta_strength: float = 1.0
    weight: float = 1.0


@dataclass(frozen=True)
class DeepMomentumRule:
    """DMGD's memory of gradients: a residual MLP trained online (nestgraph.optim.dmgd)."""

    memory_kind: ClassVar[str] = "deep_momentum"  # its memory in nestgraph.optim.composed

    hidden: int = 16
    inner_lr: float = 0.1
    alpha: float = 0.9
    delta_strength: float = 1.0
    weight: float = 1.0


@dataclass(frozen=True)
class DeepGainRule:
    """An online-trained element-wise gain curve on the gradient (nestgraph.optim.deep_gain)."""

    memory_kind: ClassVar[str] = "deep_gain"  # its memory in nestgraph.optim.composed

    hidden: int = 16
    inner_lr: float = 0.05
    alpha: float = 0.99
    weight: float = 1.0


@dataclass(frozen=True)
class SecondMomentRule:
    """A memory of squared gradients: the preconditioner."""

    memory_kind: ClassVar[str] = "second_moment"  # its memory in nestgraph.optim.composed

    beta: float = 0.999
    mode: str = "ema"


@dataclass(frozen=True)
class ClosedFormRule:
    """No hyper-parameters: the level's objective is minimised exactly when it runs."""


@dataclass(frozen=True)
class LevelDef:
    """Everything the runtime needs to know about one level; no reference to the spec."""

    name: str
    kind: str  # "nonparametric" | "in_context" | "memory" | "step" | "optimizer"
    period: int
    unit: str  # "token" | "step"
    lifetime: str  # "sequence" | "stream" | "run"
    rule: (GDRule | AdamWRule | ClosedFormRule | TitansRule | DGDRule | MemoriesRule
           | MomentumRule | DeepMomentumRule | DeepGainRule | SecondMomentRule)
    modules: tuple[str, ...] = ()  # module paths whose parameters this level owns
    context: str = "tokens"
    objective: str = "next_token"
    meta: str = "second_order"
    # Nested CMS: module paths of the next faster block, whose initial state this level learns
    # in context and to which it resets that block every time it updates.
    resets: tuple[str, ...] = ()
    # Data-dependent step sizes: per path of ``modules``, the read-out that makes each token's
    # step size from the module's input (an in-context level whose lr a module produces).
    step_sizes: tuple[str, ...] = ()
    # An optimizer level: the step level whose gradients it reads.
    source: str = ""
    notes: tuple[str, ...] = field(default=())


def in_context_levels(levels: tuple[LevelDef, ...]) -> list[LevelDef]:
    return [lv for lv in levels if lv.kind == "in_context"]


def needs_double_backward(levels) -> bool:
    """Whether some level differentiates through its own update (second-order or truncated
    in-context levels): the inner gradients must be differentiable, which torch.compile
    cannot do."""
    return any(lv.lifetime == "sequence" and lv.meta in ("second_order", "truncated")
               for lv in in_context_levels(levels))


def bind_levels(model: torch.nn.Module, schedule: tuple[LevelDef, ...]) -> torch.nn.Module:
    """Hand each memory level to the modules whose memories it owns (`learn_as`), so that a
    memory's chunk, objective and rule are stated once, in the schedule, and not again as the
    module's arguments. A memory level's ``modules`` are ``PATH.PART``: PART of the module at
    PATH."""
    for lv in schedule:
        if lv.kind != "memory":
            continue
        for path in lv.modules:
            owner, _, part = path.rpartition(".")
            model.get_submodule(owner).learn_as(part, lv)
    return model


def owned_parameters(model: torch.nn.Module, level: LevelDef) -> dict[str, torch.nn.Parameter]:
    """The parameters under the level's module paths, by full name, in model order."""
    return parameters_under(model, level.modules)


def parameters_under(model: torch.nn.Module,
                     paths: tuple[str, ...]) -> dict[str, torch.nn.Parameter]:
    """The parameters under some module paths, by full name, in model order."""
    prefixes = tuple(p + "." for p in paths)
    exact = set(paths)
    return {n: p for n, p in model.named_parameters() if n in exact or n.startswith(prefixes)}


def fires(level: LevelDef, position: int) -> bool:
    """Whether the level updates when its clock reaches ``position`` (tokens or steps)."""
    return position > 0 and position % level.period == 0


# ----------------------------------------------------------------------- in-context updates


def clip_per_sequence(grad: torch.Tensor, max_norm: float, batched: bool) -> torch.Tensor:
    """Scale each sequence's gradient (or the shared one) to norm at most ``max_norm``."""
    if max_norm <= 0:
        return grad
    dims = tuple(range(1, grad.dim())) if batched else tuple(range(grad.dim()))
    norm = grad.pow(2).sum(dim=dims, keepdim=True).sqrt()
    return grad * torch.clamp(max_norm / (norm + 1e-12), max=1.0)


def gd_step(rule: GDRule, weight: torch.Tensor, grad: torch.Tensor,
            velocity: torch.Tensor | None, batched: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One in-context gradient step: ``v <- mu v + g (+ wd W)``, ``W <- W - lr v``.

    Written out of place, so that when the level is second order the step stays in the graph
    and slower levels learn the initial state through it.
    """
    grad = clip_per_sequence(grad, rule.clip, batched)
    if rule.weight_decay:
        grad = grad + rule.weight_decay * weight
    if rule.momentum:
        velocity = grad if velocity is None else rule.momentum * velocity + grad
        grad = velocity
    return weight - rule.scale * grad, velocity


# ----------------------------------------------------------------------------- step levels


def schedule_factor(rule: AdamWRule | MemoriesRule, step: int, total_steps: int) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based)."""
    if rule.warmup and step < rule.warmup:
        return (step + 1) / rule.warmup
    if rule.schedule == "constant" or total_steps <= rule.warmup:
        return 1.0
    progress = min(1.0, (step - rule.warmup) / max(1, total_steps - rule.warmup))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return rule.min_lr_ratio + (1.0 - rule.min_lr_ratio) * cosine


def memory_defs(level: LevelDef, schedule: tuple[LevelDef, ...]) -> list:
    """The optimizer levels that read `level`'s gradients, as memories of its optimizer."""
    from nestgraph.optim.composed import MemoryDef

    out = []
    for lv in schedule:
        if lv.kind != "optimizer" or lv.source != level.name:
            continue
        out.append(MemoryDef(lv.name, lv.rule.memory_kind, every=lv.period // level.period,
                             objective="l2" if lv.objective == "l2" else "dot", **vars(lv.rule)))
    return out


def make_optimizer(level: LevelDef, named: dict[str, torch.nn.Parameter],
                   schedule: tuple[LevelDef, ...] = ()) -> torch.optim.Optimizer:
    """The torch optimizer of a step level, over exactly the parameters it owns (by name): the
    level's rule builds it (`optimizer` on the rule's class)."""
    build = getattr(level.rule, "optimizer", None)
    if build is None:
        raise TypeError(f"level '{level.name}': rule {type(level.rule).__name__} cannot drive a "
                        "step level")
    return build(level, named, schedule)


def schedule_problems(schedule: tuple[LevelDef, ...], seq_len: int) -> list[str]:
    """The compiler's period rules, rechecked for a sequence length chosen at train time.

    A step reads ``seq_len`` tokens, so changing it can break the nesting the compiler proved
    or leave a sequence-lifetime level unable to ever update within a sequence.
    """
    tokens = {lv.name: in_tokens(lv.period, lv.unit, seq_len) for lv in schedule}
    problems = [f"with seq_len {seq_len}, level '{slow}' ({tokens[slow]} tokens) is not a "
                f"multiple of level '{fast}' ({tokens[fast]} tokens)"
                for slow, fast, _ in nesting_violations(tokens, sorted(tokens, key=tokens.get))]
    problems += [f"with seq_len {seq_len}, level '{lv.name}' (every {lv.period} tokens, reset "
                 "every sequence) would never update" for lv in schedule
                 if never_updates(lv.kind, lv.lifetime, lv.period, seq_len)]
    return problems
