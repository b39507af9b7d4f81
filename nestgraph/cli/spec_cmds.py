"""Commands that read specs: validate, compile, fmt, graph, schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nestgraph.cli.common import (
    STAGES,
    DebugOpt,
    Format,
    SpecArg,
    _split_args,
    app,
    handled,
)
from nestgraph.cli.help import Command
from nestgraph.compiler.ir import facts
from nestgraph.console import status as _status  # one stream for log lines: stderr
from nestgraph.errors import SpecError
from nestgraph.escape import printable


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
    order = list(facts(g).order)
    if as_json:
        warnings = diagnostics_as_json(facts(g).warnings, source)
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
        help="print what one stage of the compiler leaves instead of writing files (the "
             f"graph stages: the graph with its records, as JSON): {', '.join(STAGES)}")] = None,
    debug: DebugOpt = False,
) -> None:
    """Compile a spec into build/NAME/: program.py, plan.json, spec.resolved.yaml.

    The folder becomes the most recent build, wherever it is. Example:
    nestgraph compile specs/cms.yaml model.dim=128 && nestgraph train
    """
    from nestgraph.compiler import STAGE_NAMES
    from nestgraph.compiler.show import emit_stage

    spec_arg, overrides = _one_spec(args)
    if emit is not None and emit not in STAGE_NAMES:
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


def _looks_like_spec(word: str) -> bool:
    """A spec file, or a shipped spec's name; a folder (or a path to one) is a build."""
    given = Path(word)
    if given.is_dir():
        return False
    if given.is_file() or given.suffix in (".yaml", ".yml", ".ng"):
        return True
    from nestgraph.spec import SPEC_FOLDERS

    folder, _, name = word.replace("\\", "/").rpartition("/")
    return "/" not in name and (not folder or folder in SPEC_FOLDERS)


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
