"""Errors a user can cause, each with a documented exit code.

A `Diagnostic` names a place in the spec by its *path* (``("levels", 2, "every")``), not by
line and column: passes deep in the compiler know which spec entry is wrong but not where it
sits in the file. The front end's source map turns the path into ``file:line:col`` when the
diagnostic is printed (`nestgraph.spec.source.format_diagnostics`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Exit codes, documented in README.md ("Exit codes") and tested in tests/test_cli.py.
EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug in nestgraph: the traceback is shown with --debug
EXIT_USAGE = 2  # bad command-line options (typer/click's own code)
EXIT_SPEC = 3  # the spec is invalid: parse, schema, override or graph-validation errors
EXIT_COMPILE = 4  # the spec is valid but the program cannot be built or run its shapes
EXIT_RUNTIME = 5  # training failed: bad data, a non-finite loss, a broken checkpoint
EXIT_ENVIRONMENT = 6  # something missing on the machine: a package, `dot`, a GPU asked for
EXIT_INTERRUPTED = 130  # Ctrl-C, after the checkpoint was written


@dataclass(frozen=True)
class Diagnostic:
    """One problem, located by its path in the spec document."""

    message: str
    path: tuple[str | int, ...] = ()
    hint: str = ""
    code: str = ""
    # Which part of the entry to underline: "key" for a misspelled key, "value" otherwise.
    part: str = "value"
    notes: tuple[str, ...] = field(default=())
    # "warning" for a choice that may be deliberate: printed, but the spec is accepted.
    severity: str = "error"


class NestgraphError(Exception):
    """Base of the errors that are the user's to fix: printed without a traceback."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageProblem(NestgraphError):
    """The command was called wrongly: a missing build, a folder that is not a run."""

    exit_code = EXIT_USAGE


class SpecError(NestgraphError):
    """The spec is invalid; carries every problem found, not just the first."""

    exit_code = EXIT_SPEC

    def __init__(self, diagnostics: list[Diagnostic], source=None) -> None:
        self.diagnostics = list(diagnostics)
        self.source = source  # nestgraph.spec.source.SourceFile, when known
        count = len(self.diagnostics)
        super().__init__(f"{count} error{'s' if count != 1 else ''} in the spec")


class CompileError(NestgraphError):
    """A valid spec whose program cannot be built (a pass or code generation failed)."""

    exit_code = EXIT_COMPILE

    def __init__(self, message: str, *, pass_name: str = "", after: tuple[str, ...] = (),
                 hint: str = "") -> None:
        where = f" in pass '{pass_name}'" if pass_name else ""
        done = f" (after {', '.join(after)})" if after else ""
        super().__init__(f"{message}{where}{done}", hint)
        self.pass_name = pass_name


class TrainingError(NestgraphError):
    """Training could not go on: bad data, non-finite values, a broken checkpoint."""

    exit_code = EXIT_RUNTIME


class EnvironmentProblem(NestgraphError):
    """The machine lacks something the command needs."""

    exit_code = EXIT_ENVIRONMENT
