"""Helpers shared by the passes: reporting a problem, suggesting a name."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import networkx as nx

from nestgraph.errors import Diagnostic


@dataclass
class Lost:
    """Entries the schema rejected; later passes stay quiet about names that refer to them."""

    modules: set[str] = field(default_factory=set)
    levels: set[str] = field(default_factory=set)
    owns: set[str] = field(default_factory=set)  # what the rejected levels claimed to own
    model: bool = False  # the model section itself was unusable
    dropped: int = 0  # how many levels were rejected (named or not)


def lost(g: nx.DiGraph) -> Lost:
    return g.graph.setdefault("lost", Lost())


def report(g: nx.DiGraph, message: str, path: tuple, hint: str = "", code: str = "",
           notes: tuple[str, ...] = ()) -> None:
    g.graph["diagnostics"].append(Diagnostic(message, path, hint, code, "value", notes))


def warn(g: nx.DiGraph, message: str, path: tuple, hint: str = "", code: str = "",
         notes: tuple[str, ...] = ()) -> None:
    """A choice that may be deliberate: shown with its place and a hint, the spec accepted."""
    g.graph.setdefault("warnings", []).append(
        Diagnostic(message, path, hint, code, "value", notes, severity="warning"))


def did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def level_path(g: nx.DiGraph, name: str, *rest) -> tuple:
    return ("levels", g.nodes[f"level:{name}"]["level"].index, *rest)
