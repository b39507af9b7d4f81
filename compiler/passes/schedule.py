"""The level schedule: what kind each level is, their order by frequency, and their periods.

Requires: ownership. Ensures: ``facts(g).kinds`` (level -> "nonparametric" | "in_context" |
"memory" | "step"), ``facts(g).tokens`` (level -> period in tokens per sequence lane; a step reads
``seq_len`` tokens), ``facts(g).order`` (fastest first; ties by position in the spec), ``nest``
edges from each level to the next slower one, and diagnostics for inconsistent periods.

Semantics written down here and in docs/spec.md: when several levels fire at the same position,
the faster one updates first, so the slower one's next read sees it updated.
"""

from __future__ import annotations

import math

import networkx as nx

from nestgraph.compiler.ir import edges_of, facts, levels, owned_by
from nestgraph.compiler.kinds import rule_kind
from nestgraph.compiler.passes.common import level_path, lost, report, warn
from nestgraph.compiler.passes.memories import check_memory_level
from nestgraph.periods import (
    in_tokens,
    nesting_violations,
    never_fires,
    never_updates,
    shorter_period,
)


def classify(g: nx.DiGraph) -> None:
    kinds = {}
    for lv in levels(g):
        kinds[lv.name] = _kind(lv)
        _check_kind(g, lv, kinds[lv.name])
    facts(g).kinds = kinds
    check_memory_readers(g)


def _kind(lv) -> str:
    """The rule's record decides (optimizer, memory, nonparametric), else the level's unit."""
    made = rule_kind(lv.rule.type).level_kind
    if lv.context == "gradients" or made == "optimizer":
        return "optimizer"
    if lv.unit == "step":
        return "step"
    return made or "in_context"


def _check_kind(g: nx.DiGraph, lv, kind: str) -> None:
    if any(item.split(".")[0] in lost(g).modules for item in lv.owns):
        return  # it owns a module the schema rejected: what it owns is unknown, and reported

    def bad(key, message, hint):  # key: a key of the level, or a path under it
        where = key if isinstance(key, tuple) else (key,)
        report(g, f"level '{lv.name}': {message}", level_path(g, lv.name, *where), hint,
               "E-LEVEL")

    if kind == "optimizer":
        _check_optimizer_level(g, lv, bad)
        return
    rule = rule_kind(lv.rule.type)
    if rule.reads_memories and kind != "step":
        bad("rule", f"rule '{rule.tag}' updates a step level's weights from its optimizer levels",
            "use it on a level every N steps, with levels whose context is 'gradients of' it")
    if kind == "step":
        if lv.lifetime != "run":
            bad("lifetime", f"a level updated every {lv.period} step(s) keeps its weights for the "
                "whole run", "write 'lifetime: run'")
        if not rule.step:
            bad("rule", f"a {rule.tag.replace('_', '-')} rule needs an in-context level",
                "use adamw or gd")
        if lv.context != "corpus" and not lv.source:
            bad("context", "a level updated between steps learns from the corpus",
                "write 'context: corpus'")
    elif kind == "memory":
        check_memory_level(g, lv, bad)
    elif kind == "in_context":
        if lv.lifetime == "run":
            bad("lifetime", "an in-context level's state lives for a sequence or for the stream",
                "write 'lifetime: sequence' (reset every sequence) or 'lifetime: stream'")
        if not rule.in_context:
            bad("rule", f"{rule.tag} drives step levels; in context the rule is gd",
                "use type: gd")
        for part in owned_by(g, lv.name):
            if not part.fast:
                bad("owns", f"'{part.name}' ({part.type}) cannot be updated in context",
                    "in-context levels own MLP weights (mlp modules, mlp_chain blocks)")
    else:
        if lv.objective != "nadaraya_watson" or lv.period != 1 or lv.lifetime != "sequence":
            bad("rule", "a closed-form level is softmax attention over its cache: objective "
                "nadaraya_watson, every 1 token, lifetime sequence", "see specs/transformer.yaml")
        for part in owned_by(g, lv.name):
            if part.kind != "state":
                bad("owns", f"'{part.name}' holds weights, which a closed-form level cannot own",
                    "own the module's cache instead, e.g. 'attn.cache'")
    if kind != "memory" and lv.objective in ("l2", "dot"):
        bad("objective", f"the {lv.objective} objective belongs to a memory level",
            "use rule: {type: titans, ...} on a level that owns a memory")
    for part in owned_by(g, lv.name):
        if part.memory and kind != "memory":
            bad("owns", f"'{part.name}' is a memory, written by its module's rule",
                "own it from a level with rule: {type: titans, ...} or {type: dgd, ...}")
    if kind != "nonparametric" and lv.objective == "nadaraya_watson":
        bad("objective", "nadaraya_watson is solved in closed form", "use rule: {type: closed_form}")


def _check_optimizer_level(g: nx.DiGraph, lv, bad) -> None:
    """A level that learns from another level's gradients: a memory of them (NL §4), part of
    the optimizer of the level it reads."""
    if lv.context != "gradients":
        bad("context", f"an optimizer rule ({lv.rule.type}) learns from a level's gradients",
            "write 'context: gradients of LEVEL', LEVEL a level with rule 'memories'")
        return
    rule = rule_kind(lv.rule.type)
    if rule.level_kind != "optimizer":
        bad("rule", "a level that reads gradients is a memory of them: its rule is momentum, "
            "deep_momentum, deep_gain or second_moment", "e.g. rule: {type: momentum, beta: 0.9}")
        return
    if lv.objective not in rule.objectives:
        allowed = " or ".join(rule.objectives)
        bad("objective", f"a {rule.tag} memory minimises {allowed} over the gradients",
            f"write 'objective: {next(iter(rule.objectives))}'")
    if lv.unit != "step" or lv.lifetime != "run":
        bad("every", "an optimizer level updates every N steps and lives for the run",
            "write e.g. 'every: 1 step' and 'lifetime: run'")
    if lv.owns:
        bad("owns", "an optimizer level owns no weights of the model: its state is a memory "
            "of the gradients it reads", "write 'owns: []'")
    node = f"level:{lv.source}"
    if node not in g:
        return  # the flow pass reports the unknown level
    source = g.nodes[node]["level"]
    if not rule_kind(source.rule.type).reads_memories:
        bad("context", f"level '{source.name}' is updated by its own rule "
            f"({source.rule.type}), so nothing reads this memory",
            f"give level '{source.name}' rule: {{type: memories, lr: ...}}")
    elif source.unit == "step" and lv.unit == "step" and lv.period % source.period:
        bad("every", f"every {lv.period} steps is not a multiple of the {source.period} steps "
            f"of level '{source.name}', whose gradients it reads",
            f"use a multiple of {source.period}")


def check_contexts(g: nx.DiGraph) -> None:
    """The language has room for levels that learn from another level's output; this version
    runs only optimizer levels' 'gradients of'. Refused here, at the context, so that `validate`
    and `compile` agree. A context already reported (an unknown level, a flow cycle) is not
    reported again. Requires: flow."""
    flows = edges_of(g, "context")
    cyclic = {n for c in nx.strongly_connected_components(flows)
              if len(c) > 1 or any(flows.has_edge(n, n) for n in c) for n in c}
    for lv in levels(g):
        kind = facts(g).kinds[lv.name]
        if (not lv.source or kind == "optimizer" or f"level:{lv.source}" not in g
                or f"level:{lv.name}" in cyclic):
            continue
        learns = "the corpus" if kind == "step" else "tokens"
        report(g, f"level '{lv.name}' learns from '{lv.context} of {lv.source}': a context "
               "this version does not run (it runs 'tokens' for in-context and memory levels, "
               "'corpus' for step levels, 'gradients of' for optimizer levels)",
               level_path(g, lv.name, "context"),
               f"{'an' if kind == 'in_context' else 'a'} {kind.replace('_', '-')} level learns "
               f"from {learns}: write "
               f"'context: {learns.removeprefix('the ')}'", "E-LEVEL")


def check_memory_readers(g: nx.DiGraph) -> None:
    """A step level with rule 'memories' needs at least one optimizer level reading it."""
    readers = {lv.source for lv in levels(g) if lv.context == "gradients"}
    for lv in levels(g):
        if rule_kind(lv.rule.type).reads_memories and lv.name not in readers:
            report(g, f"level '{lv.name}' is updated from the memories of its gradients, but "
                   "no level reads them", level_path(g, lv.name, "rule"),
                   f"add a level with 'context: gradients of {lv.name}' and rule: "
                   "{type: momentum, ...}", "E-LEVEL")


def order_levels(g: nx.DiGraph) -> None:
    seq_len = facts(g).spec.train.seq_len
    tokens = {lv.name: in_tokens(lv.period, lv.unit, seq_len) for lv in levels(g)}
    order = sorted(tokens, key=lambda n: (tokens[n], g.nodes[f"level:{n}"]["level"].index))
    facts(g).tokens, facts(g).order = tokens, order
    for inner, outer in zip(order, order[1:], strict=False):
        g.add_edge(f"level:{inner}", f"level:{outer}", key="nest", kind="nest")


def check_periods(g: nx.DiGraph) -> None:
    """A faster level's period divides every slower one's (NL Def. 2: nested frequencies)."""
    tokens, seq_len = facts(g).tokens, facts(g).spec.train.seq_len
    reported = set()
    for slow, bad, faster in nesting_violations(tokens, facts(g).order):
        reported.add(slow)
        report(g, f"level '{slow}' updates every {_shown(g, slow)}, which is not a "
               f"multiple of the {_shown(g, bad)} of the faster level '{bad}'",
               level_path(g, slow, "every"),
               f"nested levels need periods that divide: try "
               f"{_suggested(g, slow, math.lcm(*faster), seq_len)} tokens", "E-PERIOD",
               (f"a step reads train.seq_len = {seq_len} tokens per sequence",))
    _check_memory_chunks(g, reported)
    for lv in levels(g):
        if never_updates(facts(g).kinds[lv.name], lv.lifetime, lv.period, seq_len):
            _refuse_unread(g, lv, seq_len)
    _warn_never_fires(g)
    _warn_unused_max_lr(g)


def _refuse_unread(g: nx.DiGraph, lv, seq_len: int) -> None:
    """A sequence-lifetime level needs an update that some prediction of the sequence reads."""
    when = ("after the sequence's last token" if lv.period == seq_len
            else "after the sequence has ended")
    short = shorter_period(seq_len)
    report(g, f"level '{lv.name}' would never change a prediction: its first update, at "
           f"token {lv.period}, comes {when} ({seq_len} tokens), and its state resets every "
           "sequence", level_path(g, lv.name, "every"),
           f"a sequence-lifetime level needs a period shorter than train.seq_len: try "
           f"'every: {short} token{'s' if short != 1 else ''}' (it divides {seq_len}), or "
           "'lifetime: stream' to keep its state across sequences", "E-PERIOD")


def _warn_unused_max_lr(g: nx.DiGraph) -> None:
    """``max_lr`` scales a produced lr only; beside a constant one it is silently unused."""
    for lv in levels(g):
        rule = lv.rule
        if rule.type == "gd" and "max_lr" in rule.model_fields_set and not isinstance(rule.lr, str):
            warn(g, f"level '{lv.name}' sets max_lr, which only a produced lr (lr: CHAIN.lr) "
                 f"uses: its constant lr {rule.lr:g} is the step",
                 level_path(g, lv.name, "rule", "max_lr"),
                 "drop max_lr, or take the lr from a chain with step_size blocks", "W-UNUSED")


def _warn_never_fires(g: nx.DiGraph) -> None:
    """A level slower than the whole run never updates in it (a sequence-lifetime one is
    refused above). Only a warning: `train --steps` or a resumed run may reach the period."""
    spec = facts(g).spec
    steps, seq_len = spec.train.steps, spec.train.seq_len
    for lv in levels(g):
        tokens = facts(g).tokens[lv.name]
        if lv.lifetime == "sequence" or not never_fires(tokens, steps, seq_len):
            continue
        need = -(-tokens // seq_len)  # steps, rounded up
        warn(g, f"level '{lv.name}' never updates in this run: it fires every {tokens} "
             f"tokens per lane, and {steps} step{'s' if steps != 1 else ''} of {seq_len} tokens "
             f"read {steps * seq_len}",
             level_path(g, lv.name, "every"),
             f"train for at least {need} steps (train.steps={need}), or shorten its period",
             "W-PERIOD")


def _check_memory_chunks(g: nx.DiGraph, reported: set[str]) -> None:
    """A memory's chunk must divide the chunks the engine reads the sequence in, so that each
    engine call holds whole memory chunks (and reading in calls equals reading at once).

    The engine's chunk is the gcd of the next-token levels' periods, so a mismatch is the fault
    of one side: of a memory level no next-token level agrees with, or else of the next-token
    levels that disagree with a memory the others agree with (the one period changed). Levels
    whose period is already reported are left out: their fix changes the chunk.
    """
    kinds = facts(g).kinds
    engine = [lv for lv in levels(g) if kinds[lv.name] == "in_context" and lv.name not in reported]
    if not engine:
        return
    chunk = math.gcd(*(lv.period for lv in engine))
    against: dict[str, list[int]] = {}  # next-token level -> memory periods it does not hold
    for lv in levels(g):
        if kinds[lv.name] != "memory" or lv.name in reported or chunk % lv.period == 0:
            continue
        disagree = [c for c in engine if c.period % lv.period]
        if len(disagree) < len(engine):
            for c in disagree:
                against.setdefault(c.name, []).append(lv.period)
            continue
        report(g, f"memory level '{lv.name}' writes every {lv.period} tokens, which does not "
               f"divide the {chunk}-token chunks the next-token levels are read in",
               level_path(g, lv.name, "every"),
               f"use a divisor of {chunk}, e.g. {math.gcd(chunk, lv.period)} tokens",
               "E-PERIOD")
    for c in engine:
        if c.name in against:
            base = math.lcm(*against[c.name])
            report(g, f"level '{c.name}' updates every {c.period} tokens, which is not a "
                   f"multiple of the {base} tokens the memory levels write at once",
                   level_path(g, c.name, "every"),
                   f"the next-token levels are read in chunks that hold whole memory chunks: "
                   f"try {_multiple(c.period, base)} tokens", "E-PERIOD")


def _shown(g: nx.DiGraph, name: str) -> str:
    lv = g.nodes[f"level:{name}"]["level"]
    return f"{lv.period} {lv.unit}{'s' if lv.period != 1 else ''}"


def _suggested(g: nx.DiGraph, name: str, base: int, seq_len: int) -> int:
    """The multiple of `base` to suggest for level `name`. A sequence-lifetime level must stay
    shorter than a sequence (the check below), so it gets the largest multiple of `base` that
    divides seq_len and is smaller, when there is one."""
    lv, value = g.nodes[f"level:{name}"]["level"], facts(g).tokens[name]
    near = _multiple(value, base)
    if (lv.lifetime != "sequence" or near < seq_len
            or not never_updates(facts(g).kinds[name], lv.lifetime, near, seq_len)):
        return near
    fits = [m for m in range((seq_len - 1) // base * base, 0, -base) if seq_len % m == 0]
    return fits[0] if fits else near


def _multiple(value: int, base: int) -> int:
    """The multiple of `base` nearest `value` (integers only: periods may be huge)."""
    return max(base, (value + base // 2) // base * base)


def check_outer(g: nx.DiGraph) -> None:
    """Sequence-lifetime states restart from an initial state some step level must learn."""
    kinds = facts(g).kinds
    steps = [n for n in facts(g).order if kinds[n] == "step"]
    needy = [lv for lv in levels(g)
             if kinds[lv.name] in ("in_context", "memory") and lv.lifetime == "sequence"]
    # A level the schema rejected may have been that step level: its error is reported.
    if needy and not steps and not lost(g).dropped:
        report(g, f"level '{needy[0].name}' resets every sequence, but no level updated every N "
               "steps learns its initial state", level_path(g, needy[0].name, "lifetime"),
               "add an outer level, e.g. {every: 1 step, context: corpus, rule: adamw, "
               "owns: rest}", "E-LEVEL")
    facts(g).init_owner = steps[-1] if steps else None
