"""The `nestgraph` command. Heavy imports (torch above all) happen inside the commands that need
them, so `nestgraph --help`, `validate` and `schema` start fast.

Every user mistake ends in a `NestgraphError`, printed without a traceback and mapped to its
documented exit code (README, "Exit codes"); `--debug` shows the traceback as well.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from nestgraph import __version__
from nestgraph.cli.help import Command
from nestgraph.console import status as _status  # one stream for log lines: stderr
from nestgraph.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    NestgraphError,
    SpecError,
    UsageProblem,
)
from nestgraph.escape import printable

# Help is wrapped to the terminal (at most 100 columns), never cut: every command has a
# short_help that fits the command list at 80 columns.
CONTEXT = {"max_content_width": 100}

app = typer.Typer(
    name="nestgraph", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False, rich_markup_mode=None, context_settings=CONTEXT,
    help="Write Nested Learning levels down as a spec, compile them to PyTorch, train them.",
)



STAGES = ("spec", "ir", "validated", "schedule", "shapes", "plan", "program")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nestgraph {__version__}")
        raise typer.Exit()


DebugOpt = Annotated[bool, typer.Option(
    "--debug", help="show Python tracebacks (also: NESTGRAPH_DEBUG=1)")]


def _env_debug() -> bool:
    return os.environ.get("NESTGRAPH_DEBUG", "").strip() not in ("", "0")


@app.callback()
def _root(
    ctx: typer.Context,
    debug: DebugOpt = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    ctx.obj = {"debug": debug}


def handled(command):
    """Turn nestgraph's errors into messages and exit codes; no traceback unless --debug."""

    @functools.wraps(command)
    def wrapper(ctx: typer.Context, *args, **kwargs):
        # --debug before the command, after it, or NESTGRAPH_DEBUG=1 in the environment.
        debug = (bool(kwargs.get("debug")) or bool(ctx.obj and ctx.obj.get("debug"))
                 or _env_debug())
        try:
            return command(ctx, *args, **kwargs)
        except (typer.Exit, typer.BadParameter):
            raise  # typer prints usage errors itself, with exit code 2
        except NestgraphError as err:
            if debug:
                traceback.print_exc()
            _print_error(err)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as err:  # noqa: BLE001 - the last line of defence
            if debug:
                traceback.print_exc()
            typer.echo(f"internal error: {type(err).__name__}: {printable(str(err))}\n"
                       "  this is a bug in nestgraph; rerun with --debug for the traceback",
                       err=True)
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


def _print_error(err: NestgraphError) -> None:
    if isinstance(err, SpecError):
        from nestgraph.spec.source import format_diagnostics

        typer.echo(format_diagnostics(err.diagnostics, err.source), err=True)
        return
    typer.echo(f"error: {printable(err.message)}", err=True)
    if err.hint:
        typer.echo(f"  = help: {printable(err.hint)}", err=True)


def _is_override(word: str) -> bool:
    """`path=value` sets a key, `~path` deletes one; anything else is a positional word."""
    return "=" in word or word.startswith("~")


def _split_args(args: list[str] | None) -> tuple[list[str], list[str]]:
    """Positional words and overrides (`path=value`, `~path`), each in the order typed."""
    args = args or []
    return [a for a in args if not _is_override(a)], [a for a in args if _is_override(a)]


# ------------------------------------------------------------------------------- commands

SpecArg = Annotated[list[str], typer.Argument(
    metavar="SPEC [PATH=VALUE|~PATH]...",
    help="the spec (a path, or the name of a shipped spec such as 'cms'), then overrides: "
         "path=value sets a key, ~path deletes one", show_default=False)]


class Format(str, Enum):
    text = "text"
    json = "json"


@app.command(cls=Command, short_help="Check a spec: schema and graph rules, every problem at once.")
@handled
def validate(
    ctx: typer.Context,
    args: SpecArg,
    format: Annotated[Format, typer.Option(
        "--format", metavar="text|json", help="text, or json (an object on success, a list of problems if not)")]
    = Format.text,
    debug: DebugOpt = False,
) -> None:
    """Check a spec: schema and graph rules, every problem at once. Exit code 3 if invalid.

    Example: nestgraph validate specs/cms.yaml train.steps=50 --format json
    """
    from nestgraph.compiler import check_document, show_warnings
    from nestgraph.spec import read_document
    from nestgraph.spec.source import diagnostics_as_json

    spec_arg, overrides = _one_spec(args)
    as_json = format is Format.json
    try:
        data, source = read_document(spec_arg, overrides)
        spec, g = check_document(data, source)
        if not as_json:  # JSON carries its warnings on stdout, with the verdict
            show_warnings(g, source)
    except SpecError as err:
        if as_json:
            typer.echo(json.dumps(diagnostics_as_json(err.diagnostics, err.source), indent=2))
            raise typer.Exit(err.exit_code) from None
        raise
    order = list(g.graph["order"])
    if as_json:
        warnings = diagnostics_as_json(g.graph["warnings"], source)
        typer.echo(json.dumps({"ok": True, "spec": spec.name, "levels": order,
                               "warnings": warnings}, indent=2))
        return
    typer.echo(printable(f"spec OK: {spec.name} ({len(spec.levels)} levels, fastest first: "
                         f"{', '.join(order)})"))


def _one_spec(args: list[str] | None) -> tuple[str, list[str]]:
    words, overrides = _split_args(args)
    if len(words) != 1:
        raise typer.BadParameter(
            f"expected one spec, got {len(words)}: {printable(' '.join(words))}")
    return words[0], overrides


@app.command("compile", cls=Command, short_help="Compile a spec into a build folder (default build/NAME).")
@handled
def compile_cmd(
    ctx: typer.Context,
    args: SpecArg,
    out: Annotated[Path | None, typer.Option(
        "-o", "--out", metavar="DIR", help="build folder [default: build/NAME]")] = None,
    emit: Annotated[str | None, typer.Option(
        "--emit", metavar="STAGE",
        help=f"print one stage instead of writing files: {', '.join(STAGES)}")] = None,
    debug: DebugOpt = False,
) -> None:
    """Compile a spec into build/NAME/: program.py, plan.json, spec.resolved.yaml.

    The folder becomes the most recent build, wherever it is. Example:
    nestgraph compile specs/cms.yaml model.dim=128 && nestgraph train
    """
    from nestgraph.compiler.show import emit_stage

    spec_arg, overrides = _one_spec(args)
    if emit is not None and emit not in STAGES:
        raise typer.BadParameter(
            f"unknown stage '{printable(emit)}'; choose one of {', '.join(STAGES)}")
    if emit is not None:
        from nestgraph.compiler import compile_spec
        from nestgraph.spec import read_document

        result = compile_spec(*read_document(spec_arg, overrides), stop_after=emit)
        typer.echo(emit_stage(result, emit), nl=False)
        return
    _compile_into(spec_arg, overrides, out)


def _compile_into(spec_arg: str, overrides: list[str], out: Path | None) -> Path:
    """Compile, write the build folder, print the level table, mark it the latest build."""
    from nestgraph.cli.summary import print_summary
    from nestgraph.compiler import compile_spec, show_warnings
    from nestgraph.compiler.buildfolder import absolute_data_overrides, mark_latest, write_build
    from nestgraph.spec import find_spec_file, read_document
    from nestgraph.viz.drawing import write_level_diagram

    overrides = absolute_data_overrides(overrides)
    data, source = read_document(spec_arg, overrides)
    result = compile_spec(data, source)
    show_warnings(result.graph, source)
    folder = write_build(result, source, overrides, out,
                         spec_folder=find_spec_file(spec_arg).parent)
    mark_latest(folder)
    print_summary(result.plan, folder)
    _status(write_level_diagram(result.plan, result.spec, folder))
    return folder


TrustOpt = Annotated[bool, typer.Option(
    "--trust-program", help="run the folder's program.py even if it is not what its "
                            "spec.resolved.yaml compiles to (it is Python code)")]


def _looks_like_spec(word: str) -> bool:
    """A spec file, or a shipped spec's name; a folder (or a path to one) is a build."""
    given = Path(word)
    if given.is_dir():
        return False
    if given.is_file() or given.suffix in (".yaml", ".yml", ".ng"):
        return True
    return "/" not in word.replace("\\", "/").removeprefix("optimizers/")


@app.command(cls=Command, short_help="Train a build (or a spec, compiled on the way); runs go to runs/.")
@handled
def train(
    ctx: typer.Context,
    args: Annotated[list[str] | None, typer.Argument(
        metavar="[BUILD|SPEC] [PATH=VALUE|~PATH]...",
        help="a build folder (default: the most recent build) then train.*/data.* overrides; "
             "or a spec (path or shipped name), compiled into build/NAME first, then "
             "overrides of any section", show_default=False)] = None,
    data: Annotated[str | None, typer.Option(
        "--data", metavar="PATH",
        help="a text file or folder [default: the Python standard library sources]")] = None,
    steps: Annotated[int | None, typer.Option("--steps", metavar="N",
                                              help="training steps")] = None,
    out: Annotated[Path, typer.Option("--out", metavar="DIR",
                                      help="where run folders go")] = Path("runs"),
    resume: Annotated[str, typer.Option(
        "--resume", metavar="auto|never|PATH",
        help="auto (continue an unfinished run), never, or a run/checkpoint folder")]
    = "auto",
    trust_program: TrustOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Train a compiled program; runs go to runs/NAME/TIMESTAMP/.

    The build's program.py is compiled again from its spec.resolved.yaml and must match byte
    for byte (exit 5 otherwise; --trust-program skips the check). Examples:
    nestgraph train build/cms --steps 50 train.batch=4;
    nestgraph train specs/cms.yaml model.dim=32 --steps 20
    """
    from nestgraph import api
    from nestgraph.compiler.buildfolder import check_program, find_build

    words, overrides = _split_args(args)
    if len(words) > 1:
        raise UsageProblem(f"expected at most one build folder or spec, got "
                           f"{printable(' '.join(words))}")
    if words and _looks_like_spec(words[0]):
        _status(f"compiling {printable(words[0])} first")
        folder = _compile_into(words[0], overrides, None)
        overrides = []  # applied by the compiler, to any section
    else:
        folder = find_build(words)
        check_program(folder, trust=trust_program)
    run_dir = api.train(folder, overrides, steps=steps, data=data, out=out, resume=resume,
                        trust=True, command=sys.argv)  # checked above, or just compiled
    _plot_after_training(run_dir)


def _plot_after_training(run_dir: Path) -> None:
    """Draw the run's curves into its folder when matplotlib is there; say so when it is not."""
    from nestgraph.errors import EnvironmentProblem
    from nestgraph.viz.plot import plot_run

    try:
        _status(f"curves: {printable(str(plot_run(run_dir)))}")
    except EnvironmentProblem as err:
        _status(f"no curves drawn: {printable(err.message)} ({printable(err.hint)})")


@app.command(cls=Command, short_help="Sample from a trained run; in-context levels keep learning.")
@handled
def generate(
    ctx: typer.Context,
    run: Annotated[Path, typer.Argument(metavar="RUN",
                                        help="a run folder (runs/NAME/TIMESTAMP)")],
    prompt: Annotated[str, typer.Option("--prompt", metavar="TEXT",
                                        help="text to continue")] = "",
    tokens: Annotated[int, typer.Option("--tokens", metavar="N", help="bytes to generate")]
    = 200,
    temperature: Annotated[float, typer.Option("--temperature", metavar="T",
                                               help="sampling temperature")] = 0.8,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="random seed")] = 0,
    learn: Annotated[bool, typer.Option(
        "--learn", help="let stream-lifetime levels keep learning while the context is read "
        "(test-time learning)")] = False,
    state: Annotated[Path | None, typer.Option(
        "--state", metavar="FILE", help="start from the stream state saved in FILE "
        "[default: the run's checkpoint]")] = None,
    save_state: Annotated[Path | None, typer.Option(
        "--save-state", metavar="FILE", help="write the stream state to FILE afterwards")]
    = None,
    trust_program: TrustOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Sample from a trained run; in-context levels keep learning as they read.

    The context is read in windows of train.seq_len with the state carried. The run's
    program.py must be what its spec.resolved.yaml compiles to (exit 5 otherwise;
    --trust-program skips the check). A missing --state file exits 2, an unreadable or
    mismatched one 5.
    Example: nestgraph generate runs/cms/20261122-101500 --prompt "def " --tokens 100
    """
    from nestgraph.compiler.buildfolder import load_run

    if save_state is not None and not save_state.parent.is_dir():
        raise UsageProblem(f"cannot write '{printable(str(save_state))}': its folder does not "
                           "exist", "create the folder first, or pick another path")
    model, program, stream, cfg = load_run(run, trust=trust_program)
    from nestgraph.runtime.generate import sample
    from nestgraph.runtime.state_file import load_state
    from nestgraph.runtime.state_file import save_state as write_state

    if state is not None:
        stream = load_state(state, stream)
    text = sample(model, program.schedule, stream, prompt.encode(), tokens=tokens,
                  seq_len=cfg["seq_len"], temperature=temperature, seed=seed,
                  bf16=cfg["precision"] == "bf16", threads=cfg.get("threads", "auto"),
                  learn=learn)
    typer.echo(prompt + text.decode("utf-8", errors="replace"))
    if save_state is not None:
        from nestgraph.fsutil import environment_errors

        with environment_errors(save_state):
            write_state(save_state, stream, program.name)
        _status(f"wrote the stream state to {printable(str(save_state))}")


@app.command("eval", cls=Command, short_help="Evaluate a run: continual, recall, copy, levels.")
@handled
def eval_cmd(
    ctx: typer.Context,
    run: Annotated[Path, typer.Argument(metavar="RUN",
                                        help="a run folder (runs/NAME/TIMESTAMP)")],
    task: Annotated[str, typer.Option(
        "--task", metavar="TASK", help="continual, recall, copy, levels, or all")] = "all",
    steps: Annotated[int, typer.Option(
        "--steps", metavar="N", help="continual: training steps per domain")] = 20,
    stdlib_domains: Annotated[int, typer.Option(
        "--stdlib-domains", metavar="N",
        help="continual: the N largest standard-library packages as domains")] = 3,
    domain: Annotated[list[Path] | None, typer.Option(
        "--domain", metavar="FILE", help="continual: a text file as one more domain "
                                         "(repeatable)")] = None,
    domain_bytes: Annotated[int, typer.Option(
        "--domain-bytes", metavar="N", help="continual: bytes read of each domain")] = 200_000,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="continual: start from the run's initial weights, not its trained "
                        "ones")] = False,
    batches: Annotated[int, typer.Option(
        "--batches", metavar="N", help="continual, levels: held-out batches per score")] = 2,
    lengths: Annotated[str, typer.Option(
        "--lengths", metavar="LIST",
        help="recall: context lengths in multiples of train.seq_len")] = "1,2,4",
    sizes: Annotated[str, typer.Option(
        "--sizes", metavar="LIST", help="copy: the strings' n")] = "4,8,16,32",
    samples: Annotated[int, typer.Option(
        "--samples", metavar="N", help="recall, copy: examples per length")] = 8,
    finetune: Annotated[int, typer.Option(
        "--finetune", metavar="N",
        help="recall, copy: first train a copy N steps on the task's format")] = 0,
    threshold: Annotated[float, typer.Option(
        "--threshold", metavar="BPB",
        help="levels: flag an ablation that changes held-out bpb by less")] = 1e-4,
    seed: Annotated[int, typer.Option("--seed", metavar="N",
                                      help="recall, copy: seed of the examples")] = 0,
    trust_program: TrustOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Evaluate a run's latest checkpoint; writes RUN/eval/TASK.json and RUN/eval/TASK.png.

    The table goes to standard output; the figure needs matplotlib (without it the JSON is
    still written). Example: nestgraph eval runs/hope/20261202-101500 --task levels
    """
    from nestgraph.evaluation.tasks import Options, check, evaluate, tasks_named

    names = tasks_named(task)
    options = Options(steps=steps, stdlib_domains=stdlib_domains, domains=list(domain or []),
                      domain_bytes=domain_bytes, fresh=fresh, batches=batches, lengths=lengths,
                      sizes=sizes,
                      samples=samples, finetune=finetune, threshold=threshold, seed=seed)
    check(options)
    from nestgraph.evaluation.loaded import load
    from nestgraph.evaluation.report import show
    from nestgraph.runtime.train.threads import apply_threads

    loaded = load(run, trust=trust_program)
    apply_threads(loaded.cfg.get("threads", "auto"))
    for name in names:
        _status(f"eval {name}: {printable(str(run))} at step {loaded.step}")
        path, doc = evaluate(run, name, loaded, options)
        show(name, doc["results"])
        _status(f"wrote {printable(str(path))}")
        _plot_eval(run, name, doc)


def _plot_eval(run: Path, task: str, doc: dict) -> None:
    from nestgraph.errors import EnvironmentProblem
    from nestgraph.viz.eval_plot import plot_eval

    try:
        _status(f"figure: {printable(str(plot_eval(run, task, doc)))}")
    except EnvironmentProblem as err:
        _status(f"no figure drawn: {printable(err.message)} ({printable(err.hint)})")


@app.command(cls=Command, short_help="Format specs canonically, or convert between YAML and .ng.")
@handled
def fmt(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="spec files (.yaml or .ng)",
                                                show_default=False)],
    to: Annotated[str | None, typer.Option(
        "--to", metavar="yaml|ng",
        help="write the other form: yaml or ng [default: each file's own form]")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="write nothing; exit 1 if a file is not as fmt would write it")] = False,
    out: Annotated[str | None, typer.Option(
        "-o", "--out", metavar="FILE",
        help="with --to and one file: where to write ('-' for stdout) "
             "[default: beside the file, with the new suffix]")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="with --to: replace a different file already at the target")] = False,
    debug: DebugOpt = False,
) -> None:
    """Format spec files canonically, or convert them between YAML and the .ng language.

    Comments are kept. Example: nestgraph fmt specs/hope.yaml --to ng
    """
    from nestgraph.fmt.files import FormatRequest, format_files

    if to is not None and to not in ("yaml", "ng"):
        raise typer.BadParameter(f"--to must be 'yaml' or 'ng', not '{printable(to)}'")
    if out is not None and (to is None or len(files) != 1):
        raise typer.BadParameter("-o needs --to and exactly one file")
    request = FormatRequest(to=to, check=check, out=out, force=force)
    if not format_files(files, request, typer.echo):
        raise typer.Exit(1)


@app.command(cls=Command, short_help="Draw a spec's levels, update schedule or modules.")
@handled
def graph(
    ctx: typer.Context,
    args: Annotated[list[str], typer.Argument(
        metavar="SPEC|BUILD [PATH=VALUE|~PATH]...",
        help="a spec (path or shipped name) or a build folder, then overrides",
        show_default=False)],
    out: Annotated[Path | None, typer.Option(
        "-o", "--out", metavar="FILE",
        help="the file to write, '-' for stdout [default: DOT, JSON or Mermaid "
             "to stdout; a picture to NAME-VIEW.FORMAT]")] = None,
    format: Annotated[str | None, typer.Option(
        "--format", metavar="FORMAT",
        help="svg, png, pdf, dot, json or mermaid [default: from -o, else dot]")] = None,
    view: Annotated[str, typer.Option(
        "--view", metavar="VIEW",
        help="levels (the hierarchy), schedule (who fires when) or modules")] = "levels",
    depth: Annotated[int, typer.Option(
        "--depth", metavar="N",
        help="0: levels only; 1: parts, layers folded (× N); 2: one per layer")] = 1,
    direction: Annotated[str, typer.Option("--direction", metavar="TB|LR",
                                           help="TB or LR")] = "TB",
    debug: DebugOpt = False,
) -> None:
    """Draw a spec's levels, update schedule or modules (Graphviz, Mermaid or JSON).

    Example: nestgraph graph specs/hope.yaml -o hope.svg
    """
    from nestgraph.viz.drawing import DrawRequest, draw

    spec_arg, overrides = _one_spec(args)
    request = DrawRequest(view=view, fmt=format, depth=depth, direction=direction.upper())
    for line in draw(spec_arg, overrides, request, out):
        if line.startswith("wrote "):
            _status(printable(line))
        else:
            typer.echo(line, nl=not line.endswith("\n"))


@app.command(cls=Command, short_help="Draw a run's training curves (needs matplotlib).")
@handled
def plot(
    ctx: typer.Context,
    run: Annotated[Path, typer.Argument(metavar="RUN",
                                        help="a run folder (runs/NAME/TIMESTAMP)")],
    out: Annotated[Path | None, typer.Option(
        "-o", "--out", metavar="FILE", help="PNG or SVG file [default: RUN/curves.png]")] = None,
    debug: DebugOpt = False,
) -> None:
    """Draw a run's training curves: loss, held-out bits per byte, speed, level updates.

    Results of `nestgraph eval` found in RUN/eval/ are drawn too, as RUN/eval/TASK.png.

    Needs matplotlib (pip install 'nestgraph[plot]').
    Example: nestgraph plot runs/hope/20261202-101500
    """
    from nestgraph.viz.eval_plot import plot_evals
    from nestgraph.viz.plot import plot_run

    _status(f"wrote {printable(str(plot_run(run, out)))}")
    for path in plot_evals(run):
        _status(f"wrote {printable(str(path))}")


@app.command(cls=Command, short_help="Print the JSON Schema of a spec.")
@handled
def schema(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("-o", "--out", metavar="FILE",
                                             help="write to a file")] = None,
    debug: DebugOpt = False,
) -> None:
    """Print the JSON Schema of a spec (for editor completion and checks).

    Example: nestgraph schema -o nestgraph.schema.json
    """
    from nestgraph.spec.schema import Spec

    text = json.dumps(Spec.model_json_schema(), indent=2, sort_keys=True) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    from nestgraph.errors import EnvironmentProblem

    try:
        out.write_text(text)
    except OSError as err:
        raise EnvironmentProblem(f"cannot write '{printable(str(out))}': "
                                 f"{err.strerror or err}") from None
    _status(f"wrote {printable(str(out))}")


def main() -> None:
    app()
