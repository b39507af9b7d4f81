"""A compiled program as the runtime sees it."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from nestgraph.runtime.levels import LevelDef

# Files of a build folder that a run keeps a copy of.
SOURCE_FILES = ("spec.yaml", "spec.ng", "spec.resolved.yaml", "plan.json", "program.py",
                "overrides.txt")


@dataclass(frozen=True)
class Program:
    name: str
    build_model: Callable[[], torch.nn.Module]
    schedule: tuple[LevelDef, ...]
    train: dict
    data: dict
    build_dir: Path | None = None
    sha256: str = ""  # of the resolved spec: a run resumes only under the same spec

    def write_sources(self, run_dir: Path) -> None:
        """Copy the spec as given and as resolved (and the program) into the run folder."""
        run_dir.mkdir(parents=True, exist_ok=True)
        if self.build_dir is None:
            return
        for name in SOURCE_FILES:
            if (self.build_dir / name).is_file():
                shutil.copyfile(self.build_dir / name, run_dir / name)


def from_module(module, build_dir: Path | None = None) -> Program:
    return Program(name=module.SPEC_NAME, build_model=module.build_model,
                   schedule=tuple(module.SCHEDULE), train=dict(module.TRAIN),
                   data=dict(module.DATA), build_dir=build_dir,
                   sha256=getattr(module, "SPEC_SHA256", ""))


def load_program(build_dir: Path) -> Program:
    """Import ``build_dir/program.py`` under a private module name."""
    path = Path(build_dir) / "program.py"
    spec = importlib.util.spec_from_file_location(f"nestgraph_program_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return from_module(module, Path(build_dir))
