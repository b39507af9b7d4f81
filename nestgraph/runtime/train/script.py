"""The entry point of a generated program.py: ``python program.py --steps N`` trains it
without the CLI (and without the schema: only the runtime is imported)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nestgraph.errors import NestgraphError
from nestgraph.escape import printable
from nestgraph.runtime.program import from_module
from nestgraph.runtime.train.loop import Interrupted, train


def main(module_name: str) -> None:
    """``python program.py [--steps N] [--data PATH] [--out DIR] [--resume auto|never|PATH]``."""
    module = sys.modules[module_name]
    parser = argparse.ArgumentParser(description=f"Train the nestgraph program '{module.SPEC_NAME}'.")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--data", default=None, help="text file or folder (default: the spec's)")
    parser.add_argument("--out", default="runs", help="where run folders go")
    parser.add_argument("--resume", default="auto", help="auto, never, or a run/checkpoint folder")
    args = parser.parse_args()
    program = from_module(module, Path(module.__file__).resolve().parent)
    cfg, data = dict(program.train), dict(program.data)
    if args.steps is not None:
        cfg["steps"] = args.steps
    if args.data is not None:
        data["source"] = args.data
    try:
        train(program, cfg, data, out=Path(args.out), resume=args.resume)
    except Interrupted as stop:
        print(stop, file=sys.stderr)
        raise SystemExit(130) from None
    except NestgraphError as err:
        print(printable(f"error: {err.message}")
              + (f"\n  hint: {printable(err.hint)}" if err.hint else ""), file=sys.stderr)
        raise SystemExit(err.exit_code) from None
