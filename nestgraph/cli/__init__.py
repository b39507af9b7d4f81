"""The `nestgraph` command. Heavy imports (torch above all) happen inside the commands that need
them, so `nestgraph --help`, `validate` and `schema` start fast.

The typer app, error handling and shared arguments are in `common.py`; the commands that read
specs in `spec_cmds.py`, those that run builds and runs in `run_cmds.py`, the tokenizer files
in `tokenizer_cmds.py` (importing them registers them on the app).
"""

from nestgraph.cli import run_cmds, spec_cmds, tokenizer_cmds  # noqa: F401 - registers them
from nestgraph.cli.common import app


def main() -> None:
    app()
