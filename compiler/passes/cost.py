"""Cost: weights and forward FLOPs per token for each level.

Requires: shapes. Ensures: ``facts(g).cost`` (level -> {"params", "flops_per_token",
"optimizer_state"}), the last the number of values the level's optimizer keeps (AdamW's two
moments; an optimizer level's memory of the gradients it reads).
FLOPs count the forward pass of what the level owns (2 per multiply-add); an attention cache
costs its scores and weighted sum over the average context of a sequence.

It also ensures ``facts(g).memory``, an estimate of the bytes training needs (`estimate_memory`),
and a diagnostic, at the value that dominates it, when that is more than the machine has.
"""

from __future__ import annotations

import os
import re

import networkx as nx

from nestgraph.compiler.ir import facts, levels, owned_by
from nestgraph.compiler.kinds import rule_kind
from nestgraph.compiler.kinds.network import forward_flops
from nestgraph.compiler.passes.common import report
from nestgraph.errors import EnvironmentProblem

# Overrides the physical memory the estimate is held to: bytes, or a number with K, M, G or T
# (powers of 1024); 0 turns the check off.
MEMORY_LIMIT_ENV = "NESTGRAPH_MEMORY_LIMIT"


def count_cost(g: nx.DiGraph) -> None:
    spec, counts = facts(g).spec, facts(g).part_params
    cost = {}
    for lv in levels(g):
        owned = owned_by(g, lv.name)
        params = sum(counts.get(p.name, 0) for p in owned)
        flops = sum(forward_flops(p, spec.modules.get(p.module), spec.model, spec.train.seq_len)
                    for p in owned)
        cost[lv.name] = {"params": params, "flops_per_token": flops}
    init_owner = facts(g).init_owner
    if init_owner:
        extra = sum(counts.get(p, 0) for p in initial_states(g))
        cost[init_owner]["initial_state_params"] = extra
    for lv in levels(g):
        cost[lv.name]["optimizer_state"] = _optimizer_state(g, lv, cost)
    facts(g).cost = cost
    facts(g).memory = estimate_memory(g)
    check_memory(g, facts(g).memory, memory_limit())


def estimate_memory(g: nx.DiGraph) -> dict[str, int]:
    """Bytes training needs, roughly and from below: what a run cannot do without.

    * ``weights``: every weight, its gradient and the optimizer state (4 bytes a value, 8 in
      fp64);
    * ``activations``: for each of batch x seq_len tokens, the values the backward pass keeps:
      about the forward FLOPs per token over 2 x dim (a layer's widths), four residual-stream
      vectors per block and layer, and the logits with their gradient (2 bytes a value in bf16);
    * ``fast_weights``: each sequence lane's copy of the in-context and memory levels' state
      and its accumulator, kept once per update of a sequence for the backward pass.
    """
    spec, cost, kinds = facts(g).spec, facts(g).cost, facts(g).kinds
    model, train = spec.model, spec.train
    value = 8 if train.precision == "fp64" else 4
    activation = {"fp64": 8, "bf16": 2}.get(train.precision, 4)
    params = sum(facts(g).part_params.values())
    state = sum(c["optimizer_state"] for c in cost.values())
    flops = sum(c["flops_per_token"] for c in cost.values())
    per_token = (flops // (2 * model.dim) + 4 * model.layers * len(model.block) * model.dim
                 + 2 * model.vocab)
    fast = 0
    for lv in levels(g):
        if kinds[lv.name] in ("in_context", "memory"):
            updates = max(1, train.seq_len // facts(g).tokens[lv.name])
            fast += 2 * cost[lv.name]["params"] * (updates if lv.meta == "second_order" else 1)
    return {"weights": value * (2 * params + state),
            "activations": activation * train.batch * train.seq_len * per_token,
            "fast_weights": value * train.batch * fast,
            "per_lane": activation * train.seq_len * per_token + value * fast}


def memory_limit() -> int:
    """The bytes a run may use: the machine's physical memory, or the override's."""
    text = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if text:
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?", text, re.IGNORECASE)
        if not m:
            raise EnvironmentProblem(
                f"{MEMORY_LIMIT_ENV}={text[:40]!r} is not a size",
                hint=f"write bytes or a number with K, M, G or T, e.g. {MEMORY_LIMIT_ENV}=16G; "
                     "0 turns the memory check off")
        scale = 1 << (10 * " KMGT".index(m.group(2).upper() or " "))
        return int(float(m.group(1)) * scale)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0  # unknown: no check


def check_memory(g: nx.DiGraph, memory: dict[str, int], limit: int) -> None:
    """Refuse, at the value that dominates the estimate, a run that cannot fit in `limit`."""
    total = memory["weights"] + memory["activations"] + memory["fast_weights"]
    if limit <= 0 or total <= limit:
        return
    spec = facts(g).spec
    model, train = spec.model, spec.train
    shown = (f"training needs about {size(total)} of memory (weights, gradients and optimizer "
             f"state {size(memory['weights'])}; activations and fast weights for a batch of "
             f"{train.batch} x {train.seq_len} tokens "
             f"{size(memory['activations'] + memory['fast_weights'])}), more than the "
             f"{size(limit)} this machine has")
    notes = (f"the estimate is a lower bound; {MEMORY_LIMIT_ENV} sets the memory it is held to",)
    fits = (limit - memory["weights"]) // max(1, memory["per_lane"])
    if memory["weights"] > limit or memory["weights"] >= total - memory["weights"]:
        # the model itself is too large, or most of the estimate
        if 2 * model.vocab * model.dim > sum(facts(g).part_params.values()):
            report(g, shown, ("model", "vocab"), "use a smaller model.vocab", "E-MEMORY", notes)
        else:
            report(g, shown, ("model", "dim"), "use a smaller model.dim or fewer model.layers",
                   "E-MEMORY", notes)
    elif fits >= 1:
        report(g, shown, ("train", "batch"), f"use train.batch = {fits} or less, or a shorter "
               "train.seq_len", "E-MEMORY", notes)
    else:  # not even one sequence fits
        report(g, shown, ("train", "seq_len"), "use a shorter train.seq_len (and a smaller "
               "train.batch)", "E-MEMORY", notes)


def size(count: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def _trained(cost: dict, name: str) -> int:
    """How many values a step level's optimizer updates: its weights and initial states."""
    return cost[name]["params"] + cost[name].get("initial_state_params", 0)


def _optimizer_state(g: nx.DiGraph, lv, cost: dict) -> int:
    kind, rule = facts(g).kinds[lv.name], lv.rule
    state = rule_kind(rule.type).state
    if kind == "step":
        return state(rule, _trained(cost, lv.name), 0, 0, ())
    if kind != "optimizer" or f"level:{lv.source}" not in g:
        return 0
    read = _trained(cost, lv.source)
    chunk = read if lv.period > 1 else 0  # the gradients summed since it last fired
    shapes = [tuple(facts(g).param_shapes[n]) for n in _tensors_of(g, lv.source)]
    return state(rule, 0, read, chunk, shapes)


def _tensors_of(g: nx.DiGraph, level: str) -> list[str]:
    paths = [path for p in owned_by(g, level) for path in p.paths]
    paths += [path for name in (initial_states(g) if level == facts(g).init_owner else [])
              for path in g.nodes[f"part:{name}"]["part"].paths]
    prefixes = tuple(p + "." for p in paths)
    return [n for n in facts(g).param_shapes if n in paths or n.startswith(prefixes)]


def initial_states(g: nx.DiGraph) -> list[str]:
    """Parts whose initial state the slowest step level meta-learns.

    Sequence-lifetime levels restart from it every sequence; a stream-lifetime level's weight
    is that initial state plus what the stream has learned (W0 + Δ, `runtime.engine`), so the
    outer level trains W0 through the ordinary backward, as it would any weight.
    """
    out = []
    for lv in levels(g):
        if facts(g).kinds[lv.name] in ("in_context", "memory") \
                and lv.lifetime in ("sequence", "stream"):
            out.extend(p.name for p in owned_by(g, lv.name))
    return out
