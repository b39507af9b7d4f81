"""spec -> graph -> passes -> plan -> program: the compiler, read top to bottom.

`STAGES` is the pipeline, one named stage per pass in the order they run; `compile_spec` runs
it, verifies the graph after every stage (`ir.verify_ir`: the node records and the typed
`Facts`) and stops after any stage, and `nestgraph compile --emit NAME` shows what that stage
left (`compiler/show.py`). The validation stages collect diagnostics rather than raise; the
`validated` stage raises all of them (with the schema's) as one `SpecError`, before anything
needs torch, so `nestgraph validate` stays fast and reports every problem at once.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx
from pydantic import ValidationError

from nestgraph.compiler.ir import Lost, build_ir, facts, memory_levels, verify_ir
from nestgraph.compiler.passes.flow import check_flow
from nestgraph.compiler.passes.memories import check_memories_owned
from nestgraph.compiler.passes.modules import check_modules
from nestgraph.compiler.passes.ownership import partition_ownership
from nestgraph.compiler.passes.resolve import resolve
from nestgraph.compiler.passes.schedule import (
    check_contexts,
    check_outer,
    check_periods,
    classify,
    order_levels,
)
from nestgraph.compiler.passes.support import check_supported
from nestgraph.compiler.salvage import salvage
from nestgraph.errors import CompileError, Diagnostic, SpecError
from nestgraph.spec.schema import Spec


@dataclass
class Compilation:
    """What the pipeline has made so far; each stage fills in its part."""

    data: object  # the spec document (plain data) as read and overridden
    source: object = None  # its SourceFile, for positioned messages
    spec: Spec | None = None
    graph: nx.DiGraph | None = None
    plan: dict | None = None
    program: str | None = None
    resolved_yaml: str = ""
    stopped_at: str = "program"
    passes_run: list[str] = field(default_factory=list)
    schema_problems: list[Diagnostic] = field(default_factory=list)
    level_index: list[int] | None = None  # each level's place in the document
    lost: Lost = field(default_factory=Lost)  # what the schema rejected (salvage)


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Compilation], None]
    makes: str  # what the stage adds, for docs and the pipeline diagram
    graph: bool = True  # whether the stage works on the graph (and is verified after)
    home: str = ""  # the module that does the work (for the diagram): the pass's own


def _read_spec(c: Compilation) -> None:
    """The schema; on errors, salvage what validates so the graph checks can still run."""
    from nestgraph.spec import dump_resolved
    from nestgraph.spec.validation import diagnostics_from_pydantic

    try:
        c.spec = Spec.model_validate(c.data)
    except ValidationError as err:
        c.schema_problems = diagnostics_from_pydantic(err, c.data)
        c.spec, c.level_index, c.lost = salvage(c.data)
        if c.spec is None or c.lost.model:
            raise SpecError(c.schema_problems, c.source) from None
    c.resolved_yaml = dump_resolved(c.spec) if not c.schema_problems else ""


def _build_ir(c: Compilation) -> None:
    c.graph = build_ir(c.spec, c.level_index)
    facts(c.graph).lost = c.lost


def _on_graph(name: str, graph_pass: Callable[[nx.DiGraph], None], makes: str) -> Stage:
    """A stage that is one pass over the graph."""
    def run(c: Compilation) -> None:
        graph_pass(c.graph)

    return Stage(name, run, makes, home=graph_pass.__module__)


def _raise_problems(c: Compilation) -> None:
    problems = c.schema_problems + facts(c.graph).diagnostics
    if problems:
        raise SpecError(problems, c.source)


def _shapes(c: Compilation) -> None:
    from nestgraph.compiler.passes.shapes import infer_shapes

    infer_shapes(c.graph)


def _cost(c: Compilation) -> None:
    from nestgraph.compiler.passes.cost import count_cost

    count_cost(c.graph)
    if facts(c.graph).diagnostics:  # the memory estimate: more than the machine has
        raise SpecError(facts(c.graph).diagnostics, c.source)


def _plan(c: Compilation) -> None:
    from nestgraph.compiler.plan import make_plan

    c.plan = make_plan(c.graph, c.resolved_yaml)


def _program(c: Compilation) -> None:
    from nestgraph.compiler.codegen import emit_program

    c.program = emit_program(c.plan, c.spec, memory_levels(c.graph))


STAGES: tuple[Stage, ...] = (
    Stage("spec", _read_spec, "the validated Spec (the schema)", graph=False,
          home="nestgraph.spec.schema"),
    Stage("ir", _build_ir, "the graph: level, module and part nodes with their records",
          home="nestgraph.compiler.ir"),
    _on_graph("resolve", resolve, "names resolved: owns, contexts, block modules"),
    _on_graph("modules", check_modules, "module settings checked against the model"),
    _on_graph("ownership", partition_ownership, "owns edges: each part has one owner"),
    _on_graph("classify", classify, "facts.kinds: step, in_context, memory per level"),
    _on_graph("memories", check_memories_owned, "every memory has its level"),
    _on_graph("order", order_levels, "facts.order/tokens, nest edges"),
    _on_graph("periods", check_periods, "periods nest and fit the sequence"),
    _on_graph("outer", check_outer, "one outer level trains what no other does"),
    _on_graph("flow", check_flow, "context edges: what each level learns from"),
    _on_graph("contexts", check_contexts, "contexts fit the kinds; facts.init_owner"),
    Stage("validated", _raise_problems, "every problem so far, raised as one SpecError",
          home="nestgraph.compiler"),
    _on_graph("supported", check_supported, "what this version cannot run yet"),
    Stage("shapes", _shapes, "facts.param_shapes/part_params (from the runtime modules)",
          home="nestgraph.compiler.passes.shapes"),
    Stage("cost", _cost, "facts.cost/memory: FLOPs, parameters, training memory",
          home="nestgraph.compiler.passes.cost"),
    Stage("plan", _plan, "the plan: levels, schedule, train and data (JSON)",
          home="nestgraph.compiler.plan"),
    Stage("program", _program, "program.py's text", graph=False,
          home="nestgraph.compiler.codegen"),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)
VALIDATED = STAGE_NAMES.index("validated")


def compile_spec(data, source=None, stop_after: str = "program") -> Compilation:
    """Run the pipeline on a spec document up to `stop_after`, verifying the graph after every
    stage.

    A stage before ``validated`` is where the result stops, but the validation stages still
    run to their end, so that a spec with problems reports all of them wherever one stops."""
    if stop_after not in STAGE_NAMES:
        raise ValueError(f"no stage {stop_after!r}; the stages are {', '.join(STAGE_NAMES)}")
    c = Compilation(data, source, stopped_at=stop_after)
    stop = STAGE_NAMES.index(stop_after)
    kept = None
    for i, stage in enumerate(STAGES[:max(stop, VALIDATED) + 1]):
        _run(stage, c)
        if i == stop and stop < VALIDATED:
            kept = _snapshot(c)
    return kept or c


def validate_graph(spec: Spec, index: list[int] | None = None,
                   gone: Lost | None = None) -> nx.DiGraph:
    """The graph stages' checks on a validated Spec: the graph, its problems collected in
    ``facts(g).diagnostics`` (not raised)."""
    c = Compilation(None, spec=spec, level_index=index, lost=gone or Lost())
    for stage in STAGES[1:VALIDATED]:
        _run(stage, c)
    return c.graph


def _run(stage: Stage, c: Compilation) -> None:
    stage.run(c)
    c.passes_run.append(stage.name)
    if stage.graph and c.graph is not None:
        _verify(c.graph, stage.name, c.passes_run)


def _snapshot(c: Compilation) -> Compilation:
    """The compilation as it stood after an early stage (later ones mutate the graph)."""
    out = copy.copy(c)
    if c.graph is not None:
        out.graph = c.graph.copy()
        out.graph.graph["facts"] = copy.deepcopy(facts(c.graph))
    out.passes_run = list(c.passes_run)
    return out


def check_document(data, source=None) -> tuple[Spec, nx.DiGraph]:
    """Schema, then the graph checks; every problem of both raised together as one SpecError."""
    c = compile_spec(data, source, "validated")
    return c.spec, c.graph


def show_warnings(g: nx.DiGraph | None, source) -> None:
    """Print the graph's warnings to standard error, positioned like errors.

    Called by the commands a user runs on a spec (validate, compile), not by check_document
    itself: `train` recompiles a build's resolved spec to check its program, and that must
    stay quiet."""
    from nestgraph.console import status
    from nestgraph.spec.source import format_diagnostics

    if g is not None and facts(g).warnings:
        status(format_diagnostics(facts(g).warnings, source, noun="warning"))


def _verify(g: nx.DiGraph, name: str, done: list[str]) -> None:
    try:
        verify_ir(g)
    except AssertionError as err:
        raise CompileError(f"internal: the graph is broken ({err})", pass_name=name,
                           after=tuple(done[:-1])) from err
