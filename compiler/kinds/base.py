"""The records the kinds registry holds: one per module kind, one per rule.

A record carries everything the compiler, the code generator, the cost model, shape inference and
the diagrams need to know about its kind, so that adding a kind touches its record, its schema
model and its runtime code, and nothing else. Records are plain data and functions over the
validated spec: the compiler reads them without importing torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Ownable:
    """A state a level can own: ``cms.fast``, ``attn``, ``attn.cache``, ``embedding``."""

    name: str
    kind: str  # "param" (weights) or "state" (non-parametric, e.g. an attention cache)
    module: str  # the spec's module name; "" for the model's own weights
    paths: tuple[str, ...]  # runtime module (or parameter) paths, one per layer
    fast: bool  # whether a next-token in-context level can update it as fast weights
    type: str  # the kind whose cost and diagram it takes; for messages
    memory: bool = False  # an associative memory written inside its module's forward pass


@dataclass(frozen=True)
class Call:
    """A runtime constructor call, as data: ``ctor`` is ``ALIAS.NAME`` where ALIAS is one of the
    imports of the kind that made it. The code generator writes it as source; the shapes pass
    calls it. Arguments are literals, `Call`s, or lists and dicts of them."""

    ctor: str
    args: tuple = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


def call(ctor: str, *args, **kwargs) -> Call:
    return Call(ctor, args, tuple(kwargs.items()))


@dataclass
class Flow:
    """How data moves through one module's parts, for drawing: where it enters and leaves, and
    the edges inside, as (source part, target part, edge kind, label)."""

    entries: list[str]
    exits: list[str]
    inner: list[tuple[str, str, str, str]] = field(default_factory=list)


def one_box(name: str, spec, present: list[str]) -> Flow:
    """The default flow: one box, entered and left at its first part."""
    first = present[0] if present else name
    return Flow([first], [first])


@dataclass(frozen=True)
class ModuleKind:
    """A module type of the spec's ``modules:`` (its ``type:`` tag).

    * ``ownables(name, spec, model)``: the states a level can own, in order;
    * ``constructor(spec, dim, owners)``: the runtime module as a `Call`; ``owners`` maps a
      memory ("memory", "projections") to the level that owns it, whose chunk, objective and
      rule the module applies inside its forward pass;
    * ``flops(ownable, spec, model, seq_len)``: forward multiply-adds x2 per token of one of
      its ownables, summed over layers (an ownable of type ``tag`` is costed here);
    * ``flow(name, spec, present)``: how data moves through its parts, for diagrams;
    * ``imports``: the runtime modules its calls name, as (module path, alias);
    * ``produces``: per-token values a level's rule may name (``mem.lr``);
    * ``memory_rules``: the rules that may write its memories (the first is suggested);
    * ``no_momentum``: its memories (``"projections"``) whose rule may not have a momentum.
    """

    tag: str
    ownables: Callable[[str, Any, Any], list[Ownable]]
    constructor: Callable[[Any, int, dict], Call]
    flops: Callable[[Ownable, Any, Any, int], int]
    imports: tuple[tuple[str, str], ...]
    flow: Callable[[str, Any, list[str]], Flow] = one_box
    produces: tuple[str, ...] = ()
    memory_rules: tuple[str, ...] = ()
    # Its memories that keep no momentum state (a rule's momentum there is refused).
    no_momentum: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleKind:
    """A learning rule (a level's ``rule: {type: ...}``).

    * ``runtime``: its class in ``nestgraph.runtime.levels`` (the generated program's ``lv``);
    * ``level_kind``: the kind of level it makes ("optimizer", "memory", "nonparametric"), or
      None when the level's unit decides ("step" every N steps, else "in_context");
    * ``in_context``: whether it may drive an in-context level; ``step``: a step level;
    * ``reads_memories``: a step level updated from the optimizer levels that read it;
    * ``rates``: the per-token rates a memory rule reads (constants or ``module.value``);
    * ``objectives``: what an optimizer rule may minimise over the gradients it reads, with the
      text diagrams show for each;
    * ``state(rule, trained, read, chunk, shapes)``: optimizer-state values it keeps, given the
      values a step level trains (``trained``) or an optimizer level reads (``read``), the
      gradients summed since it last fired (``chunk``) and the shapes of the tensors read.
    """

    tag: str
    runtime: str
    title: str = ""  # how messages name it: "Delta Gradient Descent (NL Eq. 88)"
    level_kind: str | None = None
    in_context: bool = True
    step: bool = True
    reads_memories: bool = False
    rates: tuple[str, ...] = ()
    objectives: dict[str, str] = field(default_factory=dict)
    state: Callable[..., int] = lambda rule, trained, read, chunk, shapes: 0


def body_path(layer: int, module: str) -> str:
    return f"layers.{layer}.blocks.{module}.body"


def bodies(name: str, model) -> list[str]:
    return [body_path(i, name) for i in range(model.layers)]


def hidden_of(dim: int, expand: float) -> int:
    return max(1, round(dim * expand))


def rate(value) -> float | None:
    """A rate named by a string is produced by the module per token: None to the runtime."""
    return None if isinstance(value, str) else float(value)
