"""Helpers for tests of nestgraph and of projects built on it."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

# The smallest valid spec: two modules, one level that owns every weight.
MINIMAL_SPEC = """\
nestgraph: 1
name: t
model:
  block: [attn, mlp]
modules:
  attn: {type: attention}
  mlp: {type: mlp}
levels:
  - name: outer
    owns: rest
    every: 1 step
    context: corpus
    objective: next_token
    rule: {type: adamw, lr: 1e-3}
    lifetime: run
"""

# A CMS configuration small enough to train about ten steps a second on a CPU.
SMALL_CMS = (
    "model.dim=16", "train.batch=2", "train.seq_len=64", "levels.cms_mid.every=32 tokens",
    "levels.cms_slow.every=128 tokens", "train.eval_batches=1", "train.eval_every=0",
    "train.log_every=1000", "data.max_bytes=200000",
)


def compile_build(folder: Path, spec: str, overrides=()) -> Path:
    """Compile a spec (a shipped name or a path) into `folder`, as `nestgraph compile -o` does."""
    from nestgraph.compiler import compile_spec
    from nestgraph.compiler.buildfolder import write_build
    from nestgraph.spec import read_document

    data, source = read_document(spec, list(overrides))
    return write_build(compile_spec(data, source), source, list(overrides), folder)


def stream_average_worker(rank: int, world: int, init_file: str, out: str) -> None:
    """One rank of a gloo job: average a rank-dependent pending stream signal, agree on a run
    folder.

    Lives in the package (not the test file) so that spawned processes can import it.
    """
    import torch
    import torch.distributed as dist

    from nestgraph.runtime.stream import StreamState
    from nestgraph.runtime.train.distributed import (
        all_equal,
        average_stream,
        current_rank,
        shared_run_dir,
    )

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        stream = StreamState(position=10, weights={"w": torch.full((2, 2), float(rank))},
                             accum={"w": torch.full((2, 2), 2.0 * rank)})
        average_stream(stream)
        run_dir = shared_run_dir(lambda: f"runs/x/chosen-by-{current_rank().rank}")
        # The pending signal is averaged; the weights are left alone (the ranks stepped them
        # alike from averaged signals, so averaging them would only cost a reduction).
        ok = (torch.equal(stream.weights["w"], torch.full((2, 2), float(rank)))
              and torch.equal(stream.accum["w"], torch.full((2, 2), 1.0))
              and all_equal(stream.accum["w"]) and not all_equal(stream.weights["w"])
              and run_dir == "runs/x/chosen-by-0")
        Path(f"{out}.{rank}").write_text("ok" if ok else f"bad {stream.weights['w']} {run_dir}")
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------ helpers for the compiler-pass tests
# Every spec in those tests is a shipped spec with one thing changed, so each test shows which
# entry a pass reacts to and that the diagnostic's path points at that entry.


def train_build(build, overrides=(), *, steps: int, out, resume: str = "never") -> Path:
    """Train a build folder quietly, as `nestgraph train` does (overrides checked alike);
    returns the run folder."""
    from nestgraph.compiler.buildfolder import RESOLVED, spec_folder_of
    from nestgraph.compiler.train_config import train_config
    from nestgraph.runtime.program import load_program
    from nestgraph.runtime.train.loop import train
    from nestgraph.runtime.train.progress import SilentReporter

    program = load_program(Path(build))
    cfg, data_cfg = train_config(program, list(overrides), steps=steps, data=None,
                                 resolved=Path(build) / RESOLVED)
    return train(program, cfg, data_cfg, out=Path(out), resume=resume, steps=steps,
                 data_base=spec_folder_of(Path(build)), reporter=SilentReporter()).run_dir


def stream_steps_worker(rank: int, world: int, init_file: str, build: str, out: str,
                        steps: int, level: str) -> None:
    """Train `steps` steps on `world` gloo ranks (1: no group) and save, per rank, the stream
    state reached and how often `level` fired in each step, to ``OUT.RANK``."""
    import torch
    import torch.distributed as dist

    from nestgraph.compiler.buildfolder import RESOLVED
    from nestgraph.compiler.train_config import train_config
    from nestgraph.runtime.program import load_program
    from nestgraph.runtime.train.data import load_corpus
    from nestgraph.runtime.train.distributed import average_stream
    from nestgraph.runtime.train.step import build_state, train_step

    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                world_size=world)
    try:
        program = load_program(Path(build))
        cfg, data_cfg = train_config(program, [], steps=steps, data=None,
                                     resolved=Path(build) / RESOLVED)
        corpus = load_corpus(None, heldout_fraction=data_cfg["heldout"],
                             max_bytes=data_cfg["max_bytes"])
        state = build_state(program, cfg, torch.device("cpu"))
        fired = []
        for _ in range(steps):
            fired.append(train_step(state, program, cfg, corpus, torch.device("cpu"))
                         [f"updates/{level}"])
            average_stream(state.stream)
        torch.save({"stream": state.stream.state_dict(), "fired": fired}, f"{out}.{rank}")
    finally:
        if world > 1:
            dist.destroy_process_group()


def data_parallel_worker(rank: int, world: int, init_file: str, build: str, out: str,
                         overrides: list[str], steps: int, resume: str = "never") -> None:
    """One rank of a gloo job training `build` through `nestgraph.api.train`; rank 0 writes
    the run folder's path to ``OUT/run.txt``. In the package so spawned processes import it."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        run = train_build(build, overrides, steps=steps, out=out, resume=resume)
        if rank == 0:
            Path(out).mkdir(parents=True, exist_ok=True)  # a resumed run writes elsewhere
            (Path(out) / "run.txt").write_text(str(run))
    finally:
        dist.destroy_process_group()


@functools.cache
def _shipped(name: str) -> dict:
    from nestgraph.spec import read_document

    data, _ = read_document(name)
    return data


def shipped_data(name: str) -> dict:
    """A fresh copy of a shipped spec's plain data, to change one thing in."""
    return copy.deepcopy(_shipped(name))


def level_of(data: dict, name: str) -> dict:
    return next(lv for lv in data["levels"] if lv["name"] == name)


def validated_graph(data: dict):
    """The graph after the validation passes (the data must pass the schema)."""
    from nestgraph.compiler import validate_graph
    from nestgraph.spec.schema import Spec

    return validate_graph(Spec.model_validate(data))


def diagnostics_of(g, code: str | None = None) -> list:
    from nestgraph.compiler.ir import facts

    return [d for d in facts(g).diagnostics if code is None or d.code == code]


def only_diagnostic(g, code: str | None = None):
    found = diagnostics_of(g, code)
    assert len(found) == 1, found
    return found[0]


def entry_at(data: dict, path: tuple):
    """The document entry a diagnostic's path names."""
    node = data
    for key in path:
        node = node[key]
    return node


def spec_errors(data: dict) -> list:
    """Every diagnostic `check_document` raises for `data` (it must raise)."""
    import pytest

    from nestgraph.compiler import check_document
    from nestgraph.errors import SpecError

    with pytest.raises(SpecError) as err:
        check_document(data)
    return err.value.diagnostics


def train_records(folder: Path, spec: str, overrides, steps: int) -> list[dict]:
    """Compile `spec` into `folder`, train it `steps` steps quietly, return its metrics."""
    from nestgraph.runtime.program import load_program
    from nestgraph.runtime.train.loop import train
    from nestgraph.runtime.train.progress import SilentReporter
    from nestgraph.runtime.train.runs import read_metrics

    program = load_program(compile_build(folder / "build", spec, overrides))
    result = train(program, dict(program.train, steps=steps), program.data, out=folder / "runs",
                   reporter=SilentReporter())
    return read_metrics(result.run_dir / "metrics.jsonl")


@functools.cache
def compiled_plan(spec: str, overrides: tuple[str, ...] = ()):
    """(plan, validated spec) of a spec, compiled once per process: what the drawings read."""
    from nestgraph.viz.sources import from_spec

    return from_spec(spec, list(overrides))


def flat(program: str) -> str:
    """A generated program with every call on one line (``f(a=1, b=2)``), so that a test can
    look for a run of arguments whatever the layout the code generator writes them in."""
    import re

    text = re.sub(r",\n\s*([)}\]])", r"\1", program)
    text = re.sub(r"([({\[])\n\s*", r"\1", text)
    return re.sub(r",\n\s+", ", ", text)


def built(program: str):
    """The model a generated program's build_model makes (its memories bound to their levels)."""
    namespace: dict = {"__name__": "nestgraph_built_program"}
    exec(compile(program, "program.py", "exec"), namespace)  # noqa: S102
    return namespace["build_model"]()
