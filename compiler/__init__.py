"""spec -> graph -> passes -> plan -> program: the compiler, read top to bottom.

`compile_spec` is the list of passes. `--emit STAGE` stops after any of `STAGES` and shows it.
Validation passes collect diagnostics; all of them (with the schema's) are raised together as
one `SpecError` before anything needs torch, so `nestgraph validate` stays fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import networkx as nx
from pydantic import ValidationError

from nestgraph.compiler.ir import build_ir, memory_levels, verify_ir
from nestgraph.compiler.passes.common import Lost
from nestgraph.compiler.passes.flow import check_flow
from nestgraph.compiler.passes.modules import check_modules
from nestgraph.compiler.passes.ownership import partition_ownership
from nestgraph.compiler.passes.resolve import resolve
from nestgraph.compiler.passes.schedule import (
    check_contexts,
    check_memories_owned,
    check_outer,
    check_periods,
    classify,
    order_levels,
)
from nestgraph.compiler.passes.support import check_supported
from nestgraph.compiler.salvage import salvage
from nestgraph.errors import CompileError, SpecError
from nestgraph.spec.schema import Spec

STAGES = ("spec", "ir", "validated", "schedule", "shapes", "plan", "program")

# The validation passes, in order. Each adds diagnostics instead of raising, so that one run
# reports every problem.
VALIDATION_PASSES = (
    ("resolve", resolve),
    ("modules", check_modules),
    ("ownership", partition_ownership),
    ("classify", classify),
    ("memories", check_memories_owned),
    ("order", order_levels),
    ("periods", check_periods),
    ("outer", check_outer),
    ("flow", check_flow),
    ("contexts", check_contexts),
)


@dataclass
class Compilation:
    spec: Spec
    graph: nx.DiGraph | None = None
    plan: dict | None = None
    program: str | None = None
    resolved_yaml: str = ""
    stopped_at: str = "program"
    passes_run: list[str] = field(default_factory=list)


def check_document(data, source=None) -> tuple[Spec, nx.DiGraph]:
    """Schema, then the graph checks; every problem of both raised together as one SpecError."""
    from nestgraph.spec.validation import diagnostics_from_pydantic

    try:
        spec, index, gone, diagnostics = Spec.model_validate(data), None, Lost(), []
    except ValidationError as err:
        diagnostics = diagnostics_from_pydantic(err, data)
        spec, index, gone = salvage(data)
    g = None
    if spec is not None and not gone.model:
        g = validate_graph(spec, index, gone)
        diagnostics = diagnostics + g.graph["diagnostics"]
    if diagnostics:
        raise SpecError(diagnostics, source)
    return spec, g


def show_warnings(g: nx.DiGraph | None, source) -> None:
    """Print the graph's warnings to standard error, positioned like errors.

    Called by the commands a user runs on a spec (validate, compile), not by check_document
    itself: `train` recompiles a build's resolved spec to check its program, and that must
    stay quiet."""
    from nestgraph.console import status
    from nestgraph.spec.source import format_diagnostics

    if g is not None and g.graph["warnings"]:
        status(format_diagnostics(g.graph["warnings"], source, noun="warning"))


def validate_graph(spec: Spec, index: list[int] | None = None, gone: Lost | None = None):
    g = build_ir(spec, index)
    g.graph["lost"] = gone or Lost()
    done = []
    for name, run in VALIDATION_PASSES:
        run(g)
        done.append(name)
        if _debug() >= 1:
            _verify(g, name, done)
    return g


def compile_spec(data, source=None, stop_after: str = "program") -> Compilation:
    from nestgraph.compiler.codegen import emit_program
    from nestgraph.compiler.passes.cost import count_cost
    from nestgraph.compiler.passes.shapes import infer_shapes
    from nestgraph.compiler.plan import make_plan
    from nestgraph.spec import dump_resolved

    spec, g = check_document(data, source)
    out = Compilation(spec, g, resolved_yaml=dump_resolved(spec), stopped_at=stop_after)
    if stop_after in ("spec", "ir", "validated", "schedule"):
        if stop_after == "ir":
            out.graph = build_ir(spec)
        return out
    check_supported(g)
    for name, run in (("shapes", infer_shapes), ("cost", count_cost)):
        run(g)
        _verify(g, name, [*out.passes_run, name])
        out.passes_run.append(name)
    if g.graph["diagnostics"]:  # the cost pass's memory estimate: more than the machine has
        raise SpecError(g.graph["diagnostics"], source)
    if stop_after == "shapes":
        return out
    out.plan = make_plan(g, out.resolved_yaml)
    if stop_after == "plan":
        return out
    out.program = emit_program(out.plan, spec, memory_levels(g))
    return out


def _verify(g: nx.DiGraph, name: str, done: list[str]) -> None:
    try:
        verify_ir(g)
    except AssertionError as err:
        raise CompileError(f"internal: the graph is broken ({err})", pass_name=name,
                           after=tuple(done[:-1])) from err


def _debug() -> int:
    try:
        return int(os.environ.get("NESTGRAPH_DEBUG", "0"))
    except ValueError:
        return 0
