"""Name resolution: every name a spec uses refers to something that exists.

Requires: the IR. Ensures: ``owns`` edges from each level to the parts it names (``rest`` is
left for the ownership pass), ``context`` edges between levels, and a diagnostic for every
unknown, duplicated or unused name.
"""

from __future__ import annotations

import networkx as nx

from nestgraph.compiler.ir import facts, levels, owner_of, parts
from nestgraph.compiler.kinds import module_kind
from nestgraph.compiler.passes.common import did_you_mean, level_path, lost, report


def resolve(g: nx.DiGraph) -> None:
    _check_level_names(g)
    _check_block(g)
    _resolve_owns(g)
    _resolve_contexts(g)
    _resolve_rates(g)


def _check_level_names(g: nx.DiGraph) -> None:
    seen: dict[str, int] = {}
    for i, level in enumerate(facts(g).spec.levels):
        index = facts(g).level_index[i]
        if level.name in seen:
            report(g, f"level '{level.name}' is defined twice", ("levels", index, "name"),
                   "give each level its own name", "E-NAME",
                   (f"first defined as levels[{seen[level.name]}]",))
        seen.setdefault(level.name, index)


def _check_block(g: nx.DiGraph) -> None:
    spec, gone = facts(g).spec, lost(g)
    seen = set()
    meant = set()  # modules suggested for a misspelt entry: not reported unused as well
    for i, entry in enumerate(spec.model.block):
        if entry.module not in spec.modules and entry.module not in gone.modules:
            suggestion = did_you_mean(entry.module, spec.modules)
            meant.update(m for m in spec.modules if suggestion == f"did you mean '{m}'?")
            report(g, f"model.block uses module '{entry.module}', which is not defined",
                   ("model", "block", i), suggestion or "define it under modules:", "E-NAME")
        elif entry.module in seen:
            report(g, f"module '{entry.module}' appears twice in model.block",
                   ("model", "block", i),
                   "define a second module with its own name to get separate weights", "E-NAME")
        seen.add(entry.module)
    for name in spec.modules:
        if name not in seen and name not in meant:
            report(g, f"module '{name}' is defined but not used in model.block",
                   ("modules", name), "add it to model.block or remove it", "E-NAME")


def _resolve_owns(g: nx.DiGraph) -> None:
    spec, gone = facts(g).spec, lost(g)
    known = {p.name: p for p in parts(g)}
    groups = _groups(g)
    for lv in levels(g):
        for j, item in enumerate(lv.owns):
            if item == "rest":
                continue
            targets = [known[item]] if item in known else groups.get(item)
            if targets is None:
                if item.split(".")[0] in gone.modules:
                    continue
                report(g, f"level '{lv.name}' owns '{item}', which is not a state of the model",
                       level_path(g, lv.name, "owns", j),
                       did_you_mean(item, list(known) + list(groups) + ["rest"]), "E-NAME",
                       (_ownable_note(known, spec),))
                continue
            for part in targets:
                first = owner_of(g, part.name)
                if first is not None and first != lv.name:
                    report(g, f"'{part.name}' is owned by level '{first}' and again by level "
                           f"'{lv.name}'", level_path(g, lv.name, "owns", j),
                           "a state has exactly one owner: remove it from one of the two levels",
                           "E-OWN")
                    continue
                g.add_edge(f"level:{lv.name}", f"part:{part.name}", key="owns", kind="owns",
                           item=j)


def _groups(g: nx.DiGraph) -> dict[str, list]:
    """A module's name stands for all its weights (``cms`` = every block of the chain)."""
    out: dict[str, list] = {}
    for p in parts(g):
        if p.kind == "param" and p.module:
            out.setdefault(p.module, []).append(p)
    return out


def _ownable_note(known, spec) -> str:
    names = sorted(known) + sorted(spec.modules) + ["rest"]
    return "ownable: " + ", ".join(dict.fromkeys(names))


def _resolve_contexts(g: nx.DiGraph) -> None:
    names = {lv.name for lv in levels(g)}
    for lv in levels(g):
        if not lv.source:
            continue
        if lv.source in names:
            g.add_edge(f"level:{lv.source}", f"level:{lv.name}", key="context", kind="context")
        elif lv.source not in lost(g).levels:
            report(g, f"level '{lv.name}' learns from level '{lv.source}', which does not exist",
                   level_path(g, lv.name, "context"), did_you_mean(lv.source, names), "E-NAME")


def _resolve_rates(g: nx.DiGraph) -> None:
    # A rate may name a value a module produces per token (``mem.lr``): that is how
    # data-dependent and, later, self-modifying levels are written.
    spec = facts(g).spec
    for lv in levels(g):
        for key in RATE_KEYS:
            value = getattr(lv.rule, key, None)
            if not isinstance(value, str):
                continue
            module, produced = value.split(".")
            if module in lost(g).modules:
                continue
            if module not in spec.modules:
                report(g, f"level '{lv.name}' takes its {key} from '{module}', which is not a "
                       "module", level_path(g, lv.name, "rule", key),
                       did_you_mean(module, spec.modules), "E-NAME")
                continue
            offered = module_kind(spec.modules[module].type).produces
            if produced not in offered:
                hint = did_you_mean(produced, offered) or (
                    f"module '{module}' produces {', '.join(offered)}" if offered
                    else "use a number here")
                report(g, f"module '{module}' produces no value '{produced}' for the {key} of "
                       f"level '{lv.name}'", level_path(g, lv.name, "rule", key), hint,
                       "E-NAME")


RATE_KEYS = ("lr", "forget", "momentum")
