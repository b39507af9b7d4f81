"""nestgraph: write Nested Learning levels down as a spec, compile them, train them.

    import nestgraph
    run = nestgraph.train(nestgraph.compile("cms", ["train.steps=20"]))
    print(nestgraph.sample(run, "def ", tokens=40))

The pipeline, one subpackage per stage (docs/architecture.md draws it):

    nestgraph.spec      YAML or .ng text -> validated `Spec` (positions kept for messages)
    nestgraph.compiler  Spec -> networkx graph -> passes -> plan -> program.py
    nestgraph.runtime   the ops, layers, levels and training loop program.py wires together
    nestgraph.viz       drawings of the level hierarchy
    nestgraph.cli       the `nestgraph` command

The names below are imported on first use, so `import nestgraph` stays cheap: torch, networkx
and pydantic load only when a function that needs them is called.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    "load_spec": "nestgraph.api",
    "compile_spec": "nestgraph.compiler",
    "compile": "nestgraph.api",
    "load_program": "nestgraph.api",
    "train": "nestgraph.api",
    "sample": "nestgraph.api",
    "evaluate": "nestgraph.api",
    "draw": "nestgraph.api",
    "register_kind": "nestgraph.compiler.kinds",
    "NestgraphError": "nestgraph.errors",
    "SpecError": "nestgraph.errors",
    "CompileError": "nestgraph.errors",
    "TrainingError": "nestgraph.errors",
}
_RENAMED = {"register_kind": "register"}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nestgraph' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), _RENAMED.get(name, name))
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
