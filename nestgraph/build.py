"""Build folders and run folders as the CLI sees them: writing, finding, loading."""

from __future__ import annotations

import json
from pathlib import Path

from nestgraph.errors import Diagnostic, SpecError, UsageProblem

BUILD_ROOT = Path("build")
LATEST = "latest"


def write_build(result, source, overrides: list[str], out: Path | None) -> Path:
    """Write program.py, plan.json, the spec as given and resolved; mark it the latest build."""
    from nestgraph.runtime.fsutil import atomic_write_text

    folder = out or BUILD_ROOT / result.spec.name
    folder.mkdir(parents=True, exist_ok=True)
    # The spec as given keeps its language: spec.ng for a .ng file, spec.yaml otherwise.
    given = "spec.ng" if source is not None and source.filename.endswith(".ng") else "spec.yaml"
    files = {
        "program.py": result.program,
        "plan.json": json.dumps(result.plan, indent=2) + "\n",
        "spec.resolved.yaml": result.resolved_yaml,
        given: source.text if source is not None else result.resolved_yaml,
        "overrides.txt": "".join(o + "\n" for o in overrides),
    }
    for name, text in files.items():
        atomic_write_text(folder / name, text)
    if out is None or out.parent == BUILD_ROOT:
        BUILD_ROOT.mkdir(exist_ok=True)
        atomic_write_text(BUILD_ROOT / LATEST, str(folder.resolve()) + "\n")
    return folder


def write_level_diagram(plan: dict, spec, folder: Path) -> str:
    """levels.dot always; levels.svg too when Graphviz's `dot` is installed. Says which."""
    from nestgraph.errors import EnvironmentProblem
    from nestgraph.runtime.fsutil import atomic_write_text
    from nestgraph.viz.render import have_dot, render
    from nestgraph.viz.views import text

    dot_text = text(plan, spec, "levels", "dot")
    atomic_write_text(folder / "levels.dot", dot_text)
    if not have_dot():
        return (f"diagram: {folder}/levels.dot (no levels.svg: Graphviz's 'dot' is not "
                "installed; install it, or run: dot -Tsvg levels.dot -o levels.svg)")
    try:
        svg = render(dot_text, "svg")
    except EnvironmentProblem as err:
        return f"diagram: {folder}/levels.dot (no levels.svg: {err.message})"
    atomic_write_text(folder / "levels.svg", svg.decode("utf-8"))
    return f"diagram: {folder}/levels.dot, levels.svg"


def emit_stage(result, stage: str) -> str:
    """The text `--emit STAGE` prints."""
    import networkx as nx

    g = result.graph
    if stage == "spec":
        return result.resolved_yaml
    if stage in ("ir", "validated"):
        data = nx.node_link_data(g, edges="edges")
        data["graph"] = {}
        data["nodes"] = [{"id": n["id"]} for n in data["nodes"]]
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    if stage == "schedule":
        rows = [f"{name:<16} {g.graph['kinds'][name]:<14} every {g.graph['tokens'][name]} tokens"
                for name in g.graph["order"]]
        return "\n".join(rows) + "\n"
    if stage == "shapes":
        return "".join(f"{n} {list(s)}\n" for n, s in g.graph["param_shapes"].items())
    if stage == "plan":
        return json.dumps(result.plan, indent=2) + "\n"
    return result.program


def print_summary(plan: dict, folder: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{plan['name']}: levels, fastest (innermost) first",
                  title_justify="left")
    numeric = ("params", "FLOPs/tok", "opt. state")
    for col in ("level", "every", "lifetime", "context", "rule", *numeric):
        table.add_column(col, justify="right" if col in numeric else "left", no_wrap=True)
    for lv in plan["levels"]:
        table.add_row(lv["name"], lv["every"], lv["lifetime"], lv["context"],
                      lv["rule"]["type"], f"{lv['params']:,}", f"{lv['flops_per_token']:,}",
                      _size(4 * lv.get("optimizer_state", 0)))
    console = Console()
    console.print(table)
    for lv in plan["levels"]:
        owns = ", ".join(lv["owns"]) or "nothing"
        init = f"; initial state of {', '.join(lv['initial_states'])}" \
            if lv["initial_states"] else ""
        console.print(f"  {lv['name']} owns {owns}{init}", markup=False)
    state = sum(lv.get("optimizer_state", 0) for lv in plan["levels"])
    console.print(f"total: {plan['totals']['params']:,} weights, "
                  f"{plan['totals']['flops_per_token']:,} forward FLOPs/token, "
                  f"optimizer state {_size(4 * state)} (fp32)", markup=False)
    if any(lv["kind"] == "in_context" for lv in plan["levels"]):
        console.print(f"next-token levels read the sequence in chunks of {plan['chunk']} tokens",
                      markup=False)
    console.print(f"wrote {folder}/program.py, plan.json, spec.resolved.yaml", markup=False)
    console.print(f"train it: nestgraph train {folder}", markup=False)


def _size(nbytes: int) -> str:
    if nbytes == 0:
        return "-"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def find_build(words: list[str]) -> Path:
    if len(words) > 1:
        raise UsageProblem(f"expected at most one build folder, got {' '.join(words)}")
    if words:
        folder = Path(words[0])
        if not (folder / "program.py").is_file():
            raise UsageProblem(f"'{folder}' is not a build folder (no program.py in it)",
                                 f"compile a spec first: nestgraph compile SPEC -o {folder}")
        return folder
    latest = BUILD_ROOT / LATEST
    if latest.is_file():
        folder = Path(latest.read_text().strip())
        if (folder / "program.py").is_file():
            print(f"using the most recent build: {folder}")
            return folder
    raise UsageProblem("no build to train", "compile a spec first: nestgraph compile "
                         "specs/cms.yaml")


def train_config(program, overrides: list[str], *, steps: int | None, data: str | None):
    """The program's train/data sections with `train.*=`/`data.*=` overrides, re-validated."""
    from pydantic import ValidationError

    from nestgraph.runtime.levels import schedule_problems
    from nestgraph.spec.schema import DataSpec, TrainSpec
    from nestgraph.spec.yaml_front import load_value

    sections = {"train": dict(program.train), "data": dict(program.data)}
    problems = []
    for i, item in enumerate(overrides, 1):
        key, _, text = item.partition("=")
        section, _, field = key.partition(".")
        if section not in sections or not field or "." in field:
            problems.append(Diagnostic(
                f"override #{i} '{item}': train accepts only train.KEY=VALUE and "
                "data.KEY=VALUE", hint="model and level changes need a recompile"))
            continue
        sections[section][field] = load_value(text) if text else ""
    if steps is not None:
        sections["train"]["steps"] = steps
    if data is not None:
        sections["data"]["source"] = data
    for name, model in (("train", TrainSpec), ("data", DataSpec)):
        try:
            sections[name] = model.model_validate(sections[name]).model_dump(mode="json")
        except ValidationError as err:
            problems += [Diagnostic(f"{name}.{'.'.join(map(str, e['loc']))}: {e['msg']}")
                         for e in err.errors()]
    if not problems:
        problems += [Diagnostic(p, hint="choose another train.seq_len, or recompile the spec "
                                "with it so the compiler checks the whole schedule")
                     for p in schedule_problems(program.schedule, sections["train"]["seq_len"])]
    if problems:
        raise SpecError(problems)
    return sections["train"], sections["data"]


def load_run(run: Path):
    """The model, program, stream state and settings of a run's latest checkpoint."""
    from nestgraph.runtime import checkpoint as ckpt
    from nestgraph.runtime.engine import init_stream
    from nestgraph.runtime.program import load_program

    if not (run / "program.py").is_file():
        raise UsageProblem(f"'{run}' is not a run folder (no program.py in it)",
                           "pass a folder under runs/NAME/")
    found = ckpt.latest_checkpoint(run)
    if found is None:
        raise UsageProblem(f"run '{run}' has no checkpoint yet")
    program = load_program(run)
    weights, state, meta = ckpt.load_checkpoint(found)
    cfg = meta.get("train", program.train)  # the settings the run actually trained with
    model = program.build_model()
    if cfg["precision"] == "fp64":
        model = model.double()
    model.load_state_dict(weights)
    stream = init_stream(model, program.schedule)
    stream.load_state_dict(state["stream"])
    return model, program, stream, cfg
