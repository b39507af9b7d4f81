"""The `nestgraph` command. Heavy imports (torch above all) happen inside the commands that need
them, so `nestgraph --help`, `validate` and `schema` start fast.

Every user mistake ends in a `NestgraphError`, printed without a traceback and mapped to its
documented exit code (README, "Exit codes"); `--debug` shows the traceback as well.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from nestgraph import __version__
from nestgraph.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, NestgraphError, SpecError

app = typer.Typer(
    name="nestgraph", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False, rich_markup_mode=None,
    help="Write Nested Learning levels down as a spec, compile them to PyTorch, train them.",
)

STAGES = ("spec", "ir", "validated", "schedule", "shapes", "plan", "program")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nestgraph {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="show Python tracebacks")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    ctx.obj = {"debug": debug}


def handled(command):
    """Turn nestgraph's errors into messages and exit codes; no traceback unless --debug."""

    @functools.wraps(command)
    def wrapper(ctx: typer.Context, *args, **kwargs):
        debug = bool(ctx.obj and ctx.obj.get("debug"))
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
            typer.echo(f"internal error: {type(err).__name__}: {err}\n"
                       "  this is a bug in nestgraph; rerun with --debug for the traceback",
                       err=True)
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


def _print_error(err: NestgraphError) -> None:
    if isinstance(err, SpecError):
        from nestgraph.spec.source import format_diagnostics

        typer.echo(format_diagnostics(err.diagnostics, err.source), err=True)
        return
    typer.echo(f"error: {err.message}", err=True)
    if err.hint:
        typer.echo(f"  = help: {err.hint}", err=True)


def _split_args(args: list[str] | None) -> tuple[list[str], list[str]]:
    """Positional words without '=' and `path=value` overrides, in order."""
    args = args or []
    return [a for a in args if "=" not in a], [a for a in args if "=" in a]


# ------------------------------------------------------------------------------- commands

SpecArg = Annotated[list[str], typer.Argument(
    help="the spec (a path, or the name of a shipped spec such as 'cms'), then path=value "
         "overrides", show_default=False)]


@app.command()
@handled
def validate(
    ctx: typer.Context,
    args: SpecArg,
    format: Annotated[str, typer.Option("--format", help="text or json")] = "text",
) -> None:
    """Check a spec: schema and graph rules, every problem at once. Exit code 3 if invalid.

    Example: nestgraph validate specs/cms.yaml train.steps=50
    """
    from nestgraph.compiler import check_document
    from nestgraph.spec import read_document
    from nestgraph.spec.source import diagnostics_as_json

    spec_arg, overrides = _one_spec(args)
    data, source = read_document(spec_arg, overrides)
    try:
        spec, g = check_document(data, source)
    except SpecError as err:
        if format == "json":
            typer.echo(json.dumps(diagnostics_as_json(err.diagnostics, err.source), indent=2))
            raise typer.Exit(err.exit_code) from None
        raise
    levels = ", ".join(g.graph["order"])
    typer.echo(f"spec OK: {spec.name} ({len(spec.levels)} levels, fastest first: {levels})")


def _one_spec(args: list[str] | None) -> tuple[str, list[str]]:
    words, overrides = _split_args(args)
    if len(words) != 1:
        raise typer.BadParameter(f"expected one spec, got {len(words)}: {' '.join(words)}")
    return words[0], overrides


@app.command("compile")
@handled
def compile_cmd(
    ctx: typer.Context,
    args: SpecArg,
    out: Annotated[Path | None, typer.Option("-o", "--out",
                                             help="build folder [default: build/NAME]")] = None,
    emit: Annotated[str | None, typer.Option(
        "--emit", help=f"print one stage instead of writing files: {', '.join(STAGES)}")] = None,
) -> None:
    """Compile a spec into build/NAME/: program.py, plan.json, spec.resolved.yaml.

    Example: nestgraph compile specs/cms.yaml model.dim=128 && nestgraph train
    """
    from nestgraph.build import emit_stage, write_build
    from nestgraph.compiler import compile_spec
    from nestgraph.spec import read_document

    spec_arg, overrides = _one_spec(args)
    if emit is not None and emit not in STAGES:
        raise typer.BadParameter(f"unknown stage '{emit}'; choose one of {', '.join(STAGES)}")
    data, source = read_document(spec_arg, overrides)
    result = compile_spec(data, source, stop_after=emit or "program")
    if emit is not None:
        typer.echo(emit_stage(result, emit), nl=False)
        return
    folder = write_build(result, source, overrides, out)
    from nestgraph.build import print_summary, write_level_diagram

    print_summary(result.plan, folder)
    typer.echo(write_level_diagram(result.plan, result.spec, folder))


@app.command()
@handled
def train(
    ctx: typer.Context,
    args: Annotated[list[str] | None, typer.Argument(
        help="a build folder (default: the most recent build), then train.*/data.* "
             "overrides", show_default=False)] = None,
    data: Annotated[str | None, typer.Option(
        "--data", help="a text file or folder [default: the Python standard library sources]")]
    = None,
    steps: Annotated[int | None, typer.Option("--steps", help="training steps")] = None,
    out: Annotated[Path, typer.Option("--out", help="where run folders go")] = Path("runs"),
    resume: Annotated[str, typer.Option(
        "--resume", help="auto (continue an unfinished run), never, or a run/checkpoint folder")]
    = "auto",
) -> None:
    """Train a compiled program; runs go to runs/NAME/TIMESTAMP/.

    Example: nestgraph train build/cms --steps 50 train.batch=4
    """
    from nestgraph.build import find_build, train_config
    from nestgraph.runtime.program import load_program
    from nestgraph.runtime.train import train as run_training

    words, overrides = _split_args(args)
    folder = find_build(words)
    program = load_program(folder)
    cfg, data_cfg = train_config(program, overrides, steps=steps, data=data)
    result = run_training(program, cfg, data_cfg, out=out, resume=resume, command=sys.argv)
    _plot_after_training(result.run_dir)


def _plot_after_training(run_dir: Path) -> None:
    """Draw the run's curves into its folder when matplotlib is there; say so when it is not."""
    from nestgraph.errors import EnvironmentProblem
    from nestgraph.viz.plot import plot_run

    try:
        typer.echo(f"curves: {plot_run(run_dir)}")
    except EnvironmentProblem as err:
        typer.echo(f"no curves drawn: {err.message} ({err.hint})")


@app.command()
@handled
def generate(
    ctx: typer.Context,
    run: Annotated[Path, typer.Argument(help="a run folder (runs/NAME/TIMESTAMP)")],
    prompt: Annotated[str, typer.Option("--prompt", help="text to continue")] = "",
    tokens: Annotated[int, typer.Option("--tokens", help="bytes to generate")] = 200,
    temperature: Annotated[float, typer.Option("--temperature")] = 0.8,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Sample from a trained run; in-context levels keep learning as they read.

    Example: nestgraph generate runs/cms/20261122-101500 --prompt "def " --tokens 100
    """
    from nestgraph.build import load_run

    model, program, stream, cfg = load_run(run)
    from nestgraph.runtime.generate import sample

    text = sample(model, program.schedule, stream, prompt.encode(), tokens=tokens,
                  seq_len=cfg["seq_len"], temperature=temperature, seed=seed,
                  bf16=cfg["precision"] == "bf16")
    typer.echo(prompt + text.decode("utf-8", errors="replace"))


@app.command()
@handled
def fmt(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="spec files (.yaml or .ng)",
                                                show_default=False)],
    to: Annotated[str | None, typer.Option(
        "--to", help="write the other form: yaml or ng [default: each file's own form]")]
    = None,
    check: Annotated[bool, typer.Option(
        "--check", help="write nothing; exit 1 if a file is not as fmt would write it")] = False,
    out: Annotated[str | None, typer.Option(
        "-o", "--out", help="with --to and one file: where to write ('-' for stdout) "
                            "[default: beside the file, with the new suffix]")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="with --to: replace a different file already at the target")] = False,
) -> None:
    """Format spec files canonically, or convert them between YAML and the .ng language.

    Comments are kept. Example: nestgraph fmt specs/hope.yaml --to ng
    """
    from nestgraph.spec.fmt_files import FormatRequest, format_files

    if to is not None and to not in ("yaml", "ng"):
        raise typer.BadParameter(f"--to must be 'yaml' or 'ng', not '{to}'")
    if out is not None and (to is None or len(files) != 1):
        raise typer.BadParameter("-o needs --to and exactly one file")
    request = FormatRequest(to=to, check=check, out=out, force=force)
    if not format_files(files, request, typer.echo):
        raise typer.Exit(1)


@app.command()
@handled
def graph(
    ctx: typer.Context,
    args: Annotated[list[str], typer.Argument(
        help="a spec (path or shipped name) or a build folder, then path=value overrides",
        show_default=False)],
    out: Annotated[Path | None, typer.Option(
        "-o", "--out", help="the file to write, '-' for stdout [default: DOT, JSON or Mermaid "
                            "to stdout; a picture to NAME-VIEW.FORMAT]")] = None,
    format: Annotated[str | None, typer.Option(
        "--format", help="svg, png, pdf, dot, json or mermaid [default: from -o, else dot]")]
    = None,
    view: Annotated[str, typer.Option(
        "--view", help="levels (the hierarchy), schedule (who fires when) or modules")]
    = "levels",
    depth: Annotated[int, typer.Option(
        "--depth", help="0: levels only; 1: parts, layers folded (× N); 2: one per layer")] = 1,
    direction: Annotated[str, typer.Option("--direction", help="TB or LR")] = "TB",
) -> None:
    """Draw a spec's levels, update schedule or modules (Graphviz, Mermaid or JSON).

    Example: nestgraph graph specs/hope.yaml -o hope.svg
    """
    from nestgraph.viz.drawing import DrawRequest, draw

    spec_arg, overrides = _one_spec(args)
    request = DrawRequest(view=view, fmt=format, depth=depth, direction=direction.upper())
    for line in draw(spec_arg, overrides, request, out):
        typer.echo(line, nl=not line.endswith("\n"))


@app.command()
@handled
def plot(
    ctx: typer.Context,
    run: Annotated[Path, typer.Argument(help="a run folder (runs/NAME/TIMESTAMP)")],
    out: Annotated[Path | None, typer.Option(
        "-o", "--out", help="PNG or SVG file [default: RUN/curves.png]")] = None,
) -> None:
    """Draw a run's training curves: loss, held-out bits per byte, speed, level updates.

    Needs matplotlib (pip install 'nestgraph[plot]'). Example: nestgraph plot runs/hope/20261202-101500
    """
    from nestgraph.viz.plot import plot_run

    typer.echo(f"wrote {plot_run(run, out)}")


@app.command()
@handled
def schema(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="write to a file")] = None,
) -> None:
    """Print the JSON Schema of a spec (for editor completion and checks).

    Example: nestgraph schema -o nestgraph.schema.json
    """
    from nestgraph.spec.schema import Spec

    text = json.dumps(Spec.model_json_schema(), indent=2, sort_keys=True) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"wrote {out}")


def main() -> None:
    app()
