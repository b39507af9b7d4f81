"""Build folders and run folders as the CLI sees them: writing, finding, checking, loading.

A build or run folder holds a generated ``program.py`` that `train` and `generate` import, so
the folder is code. Before importing it they compile the folder's ``spec.resolved.yaml`` again
and refuse a program whose bytes differ (`check_program`), unless told to trust it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nestgraph.errors import (
    Diagnostic,
    EnvironmentProblem,
    SpecError,
    TrainingError,
    UsageProblem,
)
from nestgraph.escape import printable

BUILD_ROOT = Path("build")
LATEST = "latest"
ORIGIN = "origin.json"  # where the spec came from: relative data paths are taken from there
RESOLVED = "spec.resolved.yaml"


def status(line: str) -> None:
    """A log or status line: standard error, so that standard output is the command's output."""
    print(line, file=sys.stderr, flush=True)


def _cannot_write(path: Path, err: OSError) -> EnvironmentProblem:
    reason = err.strerror or str(err)
    return EnvironmentProblem(f"cannot write '{printable(str(path))}': {reason}",
                              "choose another folder with -o, or make this one writable")


def write_build(result, source, overrides: list[str], out: Path | None,
                spec_folder: Path | None = None) -> Path:
    """Write program.py, plan.json, the spec as given and resolved; the folder written.

    `spec_folder`, the folder of the spec file, is recorded in ``origin.json``: a relative
    ``data.source`` in a spec means "next to the spec", wherever `train` is run from.
    A folder that cannot be written is an `EnvironmentProblem` (exit 6) naming the path.
    """
    from nestgraph.fsutil import atomic_write_text

    folder = out or BUILD_ROOT / result.spec.name
    # The spec as given keeps its language: spec.ng for a .ng file, spec.yaml otherwise.
    given = "spec.ng" if source is not None and source.filename.endswith(".ng") else "spec.yaml"
    files = {
        "program.py": result.program,
        "plan.json": json.dumps(result.plan, indent=2) + "\n",
        RESOLVED: result.resolved_yaml,
        given: source.text if source is not None else result.resolved_yaml,
        "overrides.txt": "".join(o + "\n" for o in overrides),
    }
    if spec_folder is not None:
        files[ORIGIN] = json.dumps({"spec_folder": str(Path(spec_folder).resolve())}) + "\n"
    target = folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            target = folder / name
            atomic_write_text(target, text)
    except OSError as err:
        raise _cannot_write(target, err) from None
    return folder


def mark_latest(folder: Path) -> None:
    """Record `folder` as the most recent build (`nestgraph train` with no BUILD trains it)."""
    from nestgraph.fsutil import atomic_write_text

    try:
        BUILD_ROOT.mkdir(exist_ok=True)
        atomic_write_text(BUILD_ROOT / LATEST, str(Path(folder).resolve()) + "\n")
    except OSError as err:
        raise _cannot_write(BUILD_ROOT / LATEST, err) from None


def write_level_diagram(plan: dict, spec, folder: Path) -> str:
    """levels.dot always; levels.svg too when Graphviz's `dot` is installed. Says which."""
    from nestgraph.fsutil import atomic_write_text
    from nestgraph.viz.render import have_dot, render
    from nestgraph.viz.views import text

    dot_text = text(plan, spec, "levels", "dot")
    try:
        atomic_write_text(folder / "levels.dot", dot_text)
    except OSError as err:
        raise _cannot_write(folder / "levels.dot", err) from None
    shown = printable(str(folder))
    if not have_dot():
        return (f"diagram: {shown}/levels.dot (no levels.svg: Graphviz's 'dot' is not "
                "installed; install it, or run: dot -Tsvg levels.dot -o levels.svg)")
    try:
        svg = render(dot_text, "svg")
    except EnvironmentProblem as err:
        return f"diagram: {shown}/levels.dot (no levels.svg: {err.message})"
    try:
        atomic_write_text(folder / "levels.svg", svg.decode("utf-8"))
    except OSError as err:
        raise _cannot_write(folder / "levels.svg", err) from None
    return f"diagram: {shown}/levels.dot, levels.svg"


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


# --------------------------------------------------------------------------- the summary

_COLUMNS = ("level", "every", "lifetime", "context", "rule", "params", "FLOPs/tok", "opt. state")
_NUMERIC = frozenset({"params", "FLOPs/tok", "opt. state"})


def summary_rows(plan: dict) -> list[tuple[str, ...]]:
    """The level table's rows, every user string made safe to print."""
    return [tuple(printable(str(cell)) for cell in (
        lv["name"], lv["every"], lv["lifetime"], lv["context"], lv["rule"]["type"],
        f"{lv['params']:,}", f"{lv['flops_per_token']:,}",
        _size(4 * lv.get("optimizer_state", 0))))
        for lv in plan["levels"]]


def plain_table(rows: list[tuple[str, ...]], columns: tuple[str, ...] = _COLUMNS) -> str:
    """A table as plain text, each column as wide as its widest cell: nothing is cut."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]

    def line(cells) -> str:
        out = [cell.rjust(w) if col in _NUMERIC else cell.ljust(w)
               for cell, w, col in zip(cells, widths, columns, strict=True)]
        return "  ".join(out).rstrip()

    return "\n".join([line(columns), *(line(r) for r in rows)]) + "\n"


def summary_notes(plan: dict) -> list[str]:
    """The lines under the table: what each level owns, the totals, the chunk size."""
    lines = []
    for lv in plan["levels"]:
        owns = ", ".join(lv["owns"]) or "nothing"
        init = (f"; initial state of {', '.join(lv['initial_states'])}"
                if lv["initial_states"] else "")
        lines.append(printable(f"  {lv['name']} owns {owns}{init}"))
    state = sum(lv.get("optimizer_state", 0) for lv in plan["levels"])
    lines.append(f"total: {plan['totals']['params']:,} weights, "
                 f"{plan['totals']['flops_per_token']:,} forward FLOPs/token, "
                 f"optimizer state {_size(4 * state)} (fp32)")
    if any(lv["kind"] == "in_context" for lv in plan["levels"]):
        lines.append(f"next-token levels read the sequence in chunks of {plan['chunk']} tokens")
    return lines


def print_summary(plan: dict, folder: Path, stream=None) -> None:
    """The level table and its notes on `stream` (stdout); where the build went on stderr.

    On a terminal the table is drawn by rich; in a pipe or a log it is plain text whose columns
    are as wide as their cells, so no number is ever cut.
    """
    stream = stream if stream is not None else sys.stdout
    title = printable(f"{plan['name']}: levels, fastest (innermost) first")
    rows = summary_rows(plan)
    if not (getattr(stream, "isatty", lambda: False)() and _rich_table(stream, title, rows,
                                                                       summary_notes(plan))):
        stream.write(f"{title}\n{plain_table(rows)}")
        stream.write("".join(line + "\n" for line in summary_notes(plan)))
        stream.flush()
    shown = printable(str(folder))
    status(f"wrote {shown}/program.py, plan.json, spec.resolved.yaml")
    status(f"train it: nestgraph train {shown}")


def _rich_table(stream, title: str, rows, notes: list[str]) -> bool:
    """Draw the table with rich on a terminal wide enough for every cell; False if it is not."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), title_justify="left")
    for col in _COLUMNS:
        table.add_column(col, justify="right" if col in _NUMERIC else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console = Console(file=stream)
    unbounded = console.options.update(max_width=1 << 20)
    if console.measure(table, options=unbounded).maximum > console.width:
        return False  # rich would cut cells to fit: the plain table widens instead
    console.print(table)
    for line in notes:
        console.print(Text(line))
    return True


def _size(nbytes: int) -> str:
    if nbytes == 0:
        return "-"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


# ----------------------------------------------------------------------------- finding


def is_build(path: Path) -> bool:
    return path.is_dir() and (path / "program.py").is_file()


def find_build(words: list[str]) -> Path:
    """The build folder named by `words` (at most one), else the most recent build."""
    if len(words) > 1:
        raise UsageProblem(f"expected at most one build folder, got {printable(' '.join(words))}")
    if words:
        folder = Path(words[0])
        if not is_build(folder):
            shown = printable(str(folder))
            raise UsageProblem(f"'{shown}' is not a build folder (no program.py in it)",
                               f"compile a spec first: nestgraph compile SPEC -o {shown}")
        return folder
    latest = BUILD_ROOT / LATEST
    if latest.is_file():
        folder = Path(latest.read_text().strip())
        if is_build(folder):
            status(f"using the most recent build: {printable(str(folder))}")
            return folder
    raise UsageProblem("no build to train", "compile a spec first: nestgraph compile "
                         "specs/cms.yaml, or name a spec: nestgraph train cms")


# ---------------------------------------------------------------- the program is code


def check_program(folder: Path, *, trust: bool = False) -> None:
    """Refuse a folder whose program.py is not what its spec.resolved.yaml compiles to.

    `train` and `generate` import program.py: a changed file would run whatever it says. The
    program is compiled again in memory and compared byte for byte; a difference, or a folder
    without its resolved spec, is a `TrainingError` (exit 5) unless `trust` is set.
    """
    if trust:
        return
    from nestgraph.compiler import compile_spec
    from nestgraph.spec import read_document

    shown = printable(str(folder))
    resolved = folder / RESOLVED
    hint = ("recompile the spec into a new folder, or pass --trust-program to run the file "
            "as it is (it is Python code: read it first)")
    if not resolved.is_file():
        raise TrainingError(f"'{shown}' has no {RESOLVED} to check its program.py against",
                            hint)
    try:
        expected = compile_spec(*read_document(str(resolved))).program
    except SpecError as err:
        raise TrainingError(f"the {RESOLVED} in '{shown}' does not compile "
                            f"({err.message}), so its program.py cannot be checked",
                            hint) from None
    actual = (folder / "program.py").read_bytes()
    if actual != expected.encode("utf-8"):
        raise TrainingError(f"'{shown}/program.py' is not the program its {RESOLVED} "
                            "compiles to (it was edited, or written by another version)", hint)


# ------------------------------------------------------------------------ train settings


def _sections_model():
    from pydantic import BaseModel, ConfigDict

    from nestgraph.spec.schema import DataSpec, TrainSpec

    class Sections(BaseModel):
        model_config = ConfigDict(extra="forbid")
        train: TrainSpec
        data: DataSpec

    return Sections


def train_config(program, overrides: list[str], *, steps: int | None, data: str | None,
                 resolved: Path | None = None):
    """The program's train/data sections with `train.*=`/`data.*=` overrides, re-validated.

    The overrides go through the same machinery as a spec's (positioned messages naming the
    override, with did-you-mean), applied to the build's resolved spec.
    """
    from pydantic import ValidationError

    from nestgraph.runtime.levels import schedule_problems
    from nestgraph.spec.overrides import apply_overrides
    from nestgraph.spec.source import OVERRIDE_SEGMENT, SourceFile
    from nestgraph.spec.validation import diagnostics_from_pydantic
    from nestgraph.spec.yaml_front import load_yaml

    if resolved is not None and resolved.is_file():
        document, source = load_yaml(resolved.read_text(encoding="utf-8"), str(resolved))
    else:
        document, source = {}, SourceFile(filename="<build>", text="")
    document = dict(document, train=dict(program.train), data=dict(program.data))
    overrides = absolute_data_overrides(overrides)
    if data is not None:
        data = absolute_data_overrides([f"data.source={data}"])[0].partition("=")[2]
    problems = []
    for number, item in enumerate(overrides, 1):
        key = item.lstrip("~").partition("=")[0]
        if key.split(".", 1)[0] not in ("train", "data") or "." not in key:
            path = (OVERRIDE_SEGMENT, number)
            source.overrides[path] = (number, item)
            problems.append(Diagnostic(
                "a build folder is trained with train.KEY=VALUE and data.KEY=VALUE only",
                path, code="E-OVERRIDE", hint="model and level changes need a recompile: "
                "name the spec instead (nestgraph train SPEC ...)"))
    if problems:
        raise SpecError(problems, source)
    document = apply_overrides(document, source, overrides)
    # --steps and --data are shown as what was typed when their value is the problem.
    for path, value, typed in ((("train", "steps"), steps, f"--steps {steps}"),
                               (("data", "source"), data, f"--data {data}")):
        if value is not None:
            document[path[0]][path[1]] = value
            source.overrides[path] = (len(overrides) + 1, typed)
    sections = {"train": document["train"], "data": document["data"]}
    try:
        checked = _sections_model().model_validate(sections)
    except ValidationError as err:
        raise SpecError(diagnostics_from_pydantic(err, document), source) from None
    sections = checked.model_dump(mode="json")
    problems = [Diagnostic(p, hint="choose another train.seq_len, or recompile the spec "
                           "with it so the compiler checks the whole schedule")
                for p in schedule_problems(program.schedule, sections["train"]["seq_len"])]
    if problems:
        raise SpecError(problems, source)
    return sections["train"], sections["data"]


def load_run(run: Path, *, trust: bool = False):
    """The model, program, stream state and settings of a run's latest checkpoint."""
    from nestgraph.runtime.engine import init_stream
    from nestgraph.runtime.program import load_program
    from nestgraph.runtime.train import checkpoint as ckpt

    if not (run / "program.py").is_file():
        raise UsageProblem(f"'{printable(str(run))}' is not a run folder (no program.py in it)",
                           "pass a folder under runs/NAME/")
    found = ckpt.latest_checkpoint(run)
    if found is None:
        raise UsageProblem(f"run '{printable(str(run))}' has no checkpoint yet")
    check_program(run, trust=trust)
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


def spec_folder_of(folder: Path) -> Path | None:
    """The folder of the spec a build (or a run copied from it) was compiled from, if known."""
    try:
        return Path(json.loads((Path(folder) / ORIGIN).read_text(encoding="utf-8"))["spec_folder"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


DATA_PATHS = ("data.source", "data.heldout_source")


def absolute_data_overrides(overrides: list[str]) -> list[str]:
    """``data.source=REL`` typed on the command line means REL from the working folder: make it
    absolute, so that it is not taken from the spec's folder later."""
    fixed = []
    for item in overrides:
        key, eq, value = item.partition("=")
        if eq and key.strip() in DATA_PATHS and value not in ("", "stdlib", "null", "~"):
            path = Path(value).expanduser()
            item = f"{key}={path if path.is_absolute() else Path.cwd() / path}"
        fixed.append(item)
    return fixed
