"""Helpers shared by the passes: reporting a problem, suggesting a name."""

from __future__ import annotations

import difflib

import networkx as nx

from nestgraph.compiler.ir import Lost, facts
from nestgraph.errors import Diagnostic


def lost(g: nx.DiGraph) -> Lost:
    return facts(g).lost


def report(g: nx.DiGraph, message: str, path: tuple, hint: str = "", code: str = "",
           notes: tuple[str, ...] = ()) -> None:
    facts(g).diagnostics.append(Diagnostic(message, path, hint, code, "value", notes))


def warn(g: nx.DiGraph, message: str, path: tuple, hint: str = "", code: str = "",
         notes: tuple[str, ...] = ()) -> None:
    """A choice that may be deliberate: shown with its place and a hint, the spec accepted."""
    facts(g).warnings.append(
        Diagnostic(message, path, hint, code, "value", notes, severity="warning"))


def did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def level_path(g: nx.DiGraph, name: str, *rest) -> tuple:
    return ("levels", g.nodes[f"level:{name}"]["level"].index, *rest)
