"""The `nestgraph` app and what every command shares. Heavy imports (torch above all) happen inside the commands that need
them, so `nestgraph --help`, `validate` and `schema` start fast.

Every user mistake ends in a `NestgraphError`, printed without a traceback and mapped to its
documented exit code (README, "Exit codes"); `--debug` shows the traceback as well.
"""

from __future__ import annotations

import functools
import os
import traceback
from enum import Enum
from typing import Annotated

import typer

from nestgraph import __version__
from nestgraph.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    NestgraphError,
    SpecError,
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



# The compiler's stage names (nestgraph.compiler.STAGE_NAMES), written out so that the help text
# needs no import of the compiler; a test keeps the two equal.
STAGES = ("spec", "ir", "resolve", "modules", "ownership", "classify", "memories", "order",
          "periods", "outer", "flow", "contexts", "validated", "supported", "shapes", "cost",
          "plan", "program")


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
            if _speaks(err):
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


def _speaks(err: NestgraphError) -> bool:
    """In a data-parallel job rank 0 reports for all: another rank prints an error only when
    it is not what every rank meets alike (an interruption, or rank 0's own error relayed)."""
    rank = os.environ.get("RANK", "0")
    if rank == "0" or "LOCAL_RANK" not in os.environ:
        return True
    if err.exit_code == EXIT_INTERRUPTED or err.message.startswith("rank 0 stopped"):
        return False
    err.message = f"rank {rank}: {err.message}"
    return True


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



SpecArg = Annotated[list[str], typer.Argument(
    metavar="SPEC [PATH=VALUE|~PATH]...",
    help="the spec (a path, or the name of a shipped spec such as 'cms'), then overrides: "
         "path=value sets a key, ~path deletes one", show_default=False)]


class Format(str, Enum):
    text = "text"
    json = "json"


TrustOpt = Annotated[bool, typer.Option(
    "--trust-program", help="run the folder's program.py even if it is not what its "
                            "spec.resolved.yaml compiles to (it is Python code)")]
