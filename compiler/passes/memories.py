"""Memory levels and the memories they write: what a memory level may be, and that every
memory module's memory has one.

Requires: ownership, and the level kinds (`schedule.classify` calls `check_memory_level` for
each memory level). Ensures: a diagnostic for every memory that is unowned, written by a rule
its module does not take, or at a step size that cannot stay stable.
"""

from __future__ import annotations

import math

import networkx as nx

from nestgraph.compiler.ir import facts, owned_by, owner_of, parts
from nestgraph.compiler.kinds import module_kind, rule_kind
from nestgraph.compiler.kinds.titans import segment_problem
from nestgraph.compiler.passes.common import lost, report


def check_memory_level(g: nx.DiGraph, lv, bad) -> None:
    """A memory level's objective, lifetime, what it owns, its rule and rates (`bad` reports
    at the level's key)."""
    if lv.objective not in ("l2", "dot"):
        bad("objective", "a memory level minimises an associative objective",
            "write 'objective: l2' (or dot)")
    if lv.lifetime == "run":
        bad("lifetime", "a memory lives for a sequence", "write 'lifetime: sequence'")
    owned = owned_by(g, lv.name)
    if not owned or any(not part.memory for part in owned):
        names = ", ".join(p.name for p in owned if not p.memory) or "nothing"
        bad("owns", f"a memory level owns a module's memory (e.g. 'mem.memory'), not {names}",
            "own NAME.memory of a neural_memory module")
    modules = {part.module for part in owned if part.memory}
    for part in owned:
        allowed = _memory_rules(g, part)
        if allowed and lv.rule.type not in allowed:
            bad("rule", f"'{part.name}' is written by {rule_kind(allowed[0]).title}",
                f"use rule: {{type: {allowed[0]}, lr: ..., forget: ...}}")
        kind = module_kind(g.nodes[f"module:{part.module}"]["module"].spec.type)
        if part.name.rpartition(".")[2] in kind.no_momentum and getattr(lv.rule, "momentum", 0):
            bad(("rule", "momentum"), f"'{part.name}' keeps no momentum state",
                "drop the momentum (plain GD), or use rule: {type: dgd, ...}")
        _check_segment(g, lv, part, bad)
    _check_memory_stability(g, lv, bad)
    for key in rule_kind(lv.rule.type).rates:
        value = getattr(lv.rule, key)
        if isinstance(value, str) and value.split(".")[0] not in modules:
            bad("rule", f"its {key} comes from '{value.split('.')[0]}', but it owns the memory "
                f"of {', '.join(sorted(modules)) or 'no module'}",
                "a memory's rates come from its own module")


def _check_segment(g: nx.DiGraph, lv, part, bad) -> None:
    """MAC writes its memory segment by segment: whole memory chunks to a segment, so that the
    next segment recalls the state at a chunk boundary."""
    segment = getattr(g.nodes[f"module:{part.module}"]["module"].spec, "segment", 0)
    if segment and segment % lv.period:
        bad("every", f"it writes every {lv.period} tokens, which does not divide the "
            f"{segment}-token segments of '{part.module}'",
            f"use a divisor of {segment}, e.g. {math.gcd(segment, lv.period)} tokens")
    seq_len = facts(g).spec.train.seq_len
    problem = segment_problem(part.module, segment, seq_len) if segment else None
    if problem:
        report(g, problem, ("modules", part.module, "segment"),
               f"use a segment shorter than train.seq_len, e.g. {seq_len // 4} tokens "
               f"(with its memory level's period dividing it)", "E-PERIOD")


def _check_memory_stability(g: nx.DiGraph, lv, bad) -> None:
    """Guard against the divergence public Titans code is known for (NaN at depth).

    A chunk sums C gradients taken at one state, and momentum multiplies a step by up to
    1 / (1 - momentum); for l2-normalised keys the update of a linear memory is a contraction
    only while C * lr / (1 - momentum) <= 1. The bound uses the largest rates the rule allows.
    DGD (no momentum) is held to the same bound: its decay along the key only adds damping.
    """
    rule = lv.rule
    lr = rule.max_lr if isinstance(rule.lr, str) else rule.lr
    momentum = getattr(rule, "momentum", 0.0)  # DGD has none
    if isinstance(momentum, str):
        momentum = rule.max_momentum
    # The schema bounds each rate on its own (lr > 0, momentum in [0, 1)); this is their joint
    # upper bound, reported at the rate to lower.
    gain = lv.period * lr / (1 - momentum)
    if gain > 1:
        safe = (1 - momentum) / lv.period
        key = "max_lr" if isinstance(rule.lr, str) else "lr"
        with_momentum = f" with momentum up to {momentum:g}" if hasattr(rule, "momentum") else ""
        bound = "chunk x lr / (1 - momentum) <= 1" if with_momentum else "chunk x lr <= 1"
        bad(("rule", key), f"every {lv.period} tokens at lr up to {lr:g}{with_momentum}, one "
            f"memory step can be {gain:.3g} times too large to stay stable",
            f"use {key} <= {safe:.3g} ({bound})")


def check_memories_owned(g: nx.DiGraph) -> None:
    """Every memory module's memory needs a level to set its chunk and rule."""
    for part in parts(g):
        if part.memory and g.nodes[f"module:{part.module}"]["module"].used:
            owner = owner_of(g, part.name)
            if owner is None and part.name in lost(g).owns:
                continue  # its level was rejected by the schema, and that is reported
            if owner is None or facts(g).kinds.get(owner) != "memory":
                what = "memory" if part.name.endswith(".memory") else "projection memories"
                report(g, f"the {what} of module '{part.module}' has no memory level",
                       ("modules", part.module),
                       f"add a level with owns: {part.name}, every: N tokens, objective: l2, "
                       f"rule: {{type: {_memory_rules(g, part)[0]}, lr: ...}}", "E-LEVEL")


def _memory_rules(g: nx.DiGraph, part) -> tuple[str, ...]:
    """The rules that may write a memory: its module kind's record says."""
    return module_kind(g.nodes[f"module:{part.module}"]["module"].spec.type).memory_rules
