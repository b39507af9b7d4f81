"""The front door: what a Python user calls. `nestgraph/__init__.py` re-exports these lazily.

Three lines take a spec to samples::

    import nestgraph
    run = nestgraph.train(nestgraph.compile("cms", ["train.steps=20"]))
    print(nestgraph.sample(run, "def ", tokens=40))

Each function is a thin wrapper over the stage that does the work (named in its docstring), so
the CLI and Python share one path. Every user mistake raises a `NestgraphError` subclass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_spec(name_or_path: str, overrides: list[str] | tuple[str, ...] = (), *,
              graph_checks: bool = True):
    """Find, read, override and validate a spec (a path, or a shipped name such as ``"hope"``);
    every problem is raised in one `SpecError`. With `graph_checks` (the default) the
    compiler's validation passes run too, so a spec that loads is one that compiles.

    >>> nestgraph.load_spec("cms", ["model.dim=32"]).spec.model.dim
    32
    """
    from pydantic import ValidationError

    from nestgraph.compiler import check_document
    from nestgraph.errors import SpecError
    from nestgraph.spec import LoadedSpec, read_document
    from nestgraph.spec.schema import Spec
    from nestgraph.spec.validation import diagnostics_from_pydantic

    data, source = read_document(name_or_path, overrides)
    if graph_checks:
        spec, _ = check_document(data, source)
        return LoadedSpec(spec=spec, source=source, data=data)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as err:
        raise SpecError(diagnostics_from_pydantic(err, data), source) from None
    return LoadedSpec(spec=spec, source=source, data=data)


def compile(spec: str, overrides: list[str] | tuple[str, ...] = (),  # noqa: A001
            out: str | Path | None = None) -> Path:
    """Compile a spec (a path or a shipped name) into a build folder, as `nestgraph compile`
    does (program.py, plan.json, the spec as given and resolved); returns the folder
    (``build/NAME`` unless `out` says otherwise).

    >>> nestgraph.compile("cms", ["train.steps=2"], out="build/cms-small")
    PosixPath('build/cms-small')
    """
    from nestgraph.compiler import compile_spec as run
    from nestgraph.compiler.buildfolder import absolute_data_overrides, write_build
    from nestgraph.spec import find_spec_file, read_document

    overrides = absolute_data_overrides(list(overrides))
    data, source = read_document(spec, overrides)
    result = run(data, source)
    return write_build(result, source, overrides, None if out is None else Path(out),
                       spec_folder=find_spec_file(spec).parent)


def load_program(folder: str | Path, *, trust: bool = False):
    """The `Program` of a build or run folder, after checking that its program.py is what its
    spec.resolved.yaml compiles to (`trust` skips the check: program.py is code)."""
    from nestgraph.compiler.buildfolder import check_program
    from nestgraph.runtime.program import load_program as load

    check_program(Path(folder), trust=trust)
    return load(Path(folder))


def train(build: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
          steps: int | None = None, data: str | None = None, out: str | Path = "runs",
          resume: str = "auto", trust: bool = False, command: list[str] | None = None) -> Path:
    """Train a build folder (`nestgraph.runtime.train.loop.train`), with ``train.*`` and
    ``data.*`` overrides checked as `nestgraph train` checks them; returns the run folder.
    `command`, when given, is recorded in the run's session log as what started it.

    >>> run = nestgraph.train("build/cms-small", steps=2)
    """
    from nestgraph.compiler.buildfolder import RESOLVED, spec_folder_of
    from nestgraph.compiler.train_config import schema_defaults, train_config
    from nestgraph.runtime.train.loop import train as run_training

    folder = Path(build)
    program = load_program(folder, trust=trust)
    cfg, data_cfg = train_config(program, list(overrides), steps=steps, data=data,
                                 resolved=folder / RESOLVED)
    result = run_training(program, cfg, data_cfg, out=Path(out), resume=resume, steps=steps,
                          data_base=spec_folder_of(folder), command=command,
                          defaults=schema_defaults())
    return result.run_dir


def convert(run: str | Path, build: str | Path, *, maps: list[str] | tuple[str, ...] = (),
            zero: list[str] | tuple[str, ...] = (), out: str | Path | None = None,
            trust: bool = False):
    """A run's latest weights, or a Llama-style Hugging Face checkpoint's (a folder with
    config.json and model.safetensors; the ``hf`` extra), as the initial state of `build`
    (NL §7.3; see `nestgraph.runtime.train.convert`), written to `out` (default
    ``BUILD/init.safetensors``) for ``train.init``. Returns the file and the `Conversion`
    (what was copied, zeroed, left fresh)."""
    import torch

    from nestgraph.fsutil import environment_errors
    from nestgraph.runtime.train.convert import convert as fill
    from nestgraph.runtime.train.convert import parse_renames, save_weights
    from nestgraph.runtime.train.hf_checkpoint import is_hf_folder, read_hf
    from nestgraph.runtime.train.hf_target import source_for

    renames, zero = parse_renames(list(maps)), list(zero)
    hf = read_hf(Path(run)) if is_hf_folder(Path(run)) else None
    source = _run_weights(Path(run)) if hf is None else None
    program = load_program(build, trust=trust)
    torch.manual_seed(program.train["seed"])  # the fresh weights a run of the build starts at
    model = program.build_model()
    if hf is not None:
        source = source_for(hf, model, renames, zero)
    done = fill(source, model.state_dict(), renames, zero)
    target = Path(out) if out is not None else Path(build) / "init.safetensors"
    with environment_errors(target):
        save_weights(done.weights, target)
    return target, done


def _run_weights(run: Path) -> dict:
    """The weights of a run folder's latest checkpoint, or of a checkpoint folder."""
    from nestgraph.errors import UsageProblem
    from nestgraph.runtime.train import checkpoint as ckpt

    found = ckpt.latest_checkpoint(run) if (run / "checkpoints").is_dir() else run
    if found is None:
        raise UsageProblem(f"no checkpoint in '{run}'", "pass a run folder that has trained")
    return ckpt.load_checkpoint(found)[0]


def sample(run: str | Path, prompt: str = "", *, tokens: int = 200, temperature: float = 0.8,
           seed: int = 0, learn: bool = False, trust: bool = False,
           state: str | Path | None = None, save_state: str | Path | None = None) -> str:
    """Continue `prompt` from a run's latest checkpoint (`nestgraph.runtime.generate.sample`),
    the in-context levels learning as they read; `learn` lets stream levels learn too.
    `state` starts from a saved stream state instead of the run's; `save_state` writes the
    stream state reached (atomically), as `nestgraph generate --state/--save-state` do."""
    from nestgraph.compiler.buildfolder import load_run
    from nestgraph.runtime.generate import sample as generate
    from nestgraph.runtime.state_file import load_state
    from nestgraph.runtime.state_file import save_state as write_state

    model, program, stream, cfg = load_run(Path(run), trust=trust)
    if state is not None:
        stream = load_state(Path(state), stream)
    out = generate(model, program.schedule, stream, prompt.encode(), tokens=tokens,
                   seq_len=cfg["seq_len"], temperature=temperature, seed=seed,
                   bf16=cfg["precision"] == "bf16", threads=cfg.get("threads", "auto"),
                   learn=learn, tokenizer=_run_tokenizer(Path(run), program))
    if save_state is not None:
        from nestgraph.fsutil import environment_errors

        with environment_errors(Path(save_state)):
            write_state(Path(save_state), stream, program.name)
    return out.decode("utf-8", errors="replace")


def _run_tokenizer(run: Path, program):
    """The tokenizer `run` trained with (its data section as its checkpoint recorded it)."""
    from nestgraph.runtime.train import checkpoint as ckpt
    from nestgraph.runtime.train.tokenizer import run_tokenizer

    found = ckpt.latest_checkpoint(run)
    data = ckpt.read_meta(found).get("data", program.data) if found is not None else program.data
    return run_tokenizer(run, data.get("tokenizer"))


def evaluate(run: str | Path, task: str = "levels", *, trust: bool = False,
             **options: Any) -> dict:
    """Run one `nestgraph eval` task on a run (``continual``, ``recall``, ``copy``,
    ``levels``); writes ``RUN/eval/TASK.json`` and returns its document. `options` are the
    fields of `nestgraph.evaluation.tasks.Options` (``steps=``, ``batches=``, ...)."""
    from nestgraph.evaluation.loaded import load
    from nestgraph.evaluation.tasks import Options, check, tasks_named
    from nestgraph.evaluation.tasks import evaluate as run_task

    (name,) = tasks_named(task)
    settings = Options(**options)
    check(settings)
    _, doc = run_task(Path(run), name, load(Path(run), trust=trust), settings)
    return doc


def draw(spec: str, overrides: list[str] | tuple[str, ...] = (), *, view: str = "levels",
         fmt: str = "dot", depth: int = 1) -> str:
    """A diagram of a spec, a build or a run as text (``dot``, ``mermaid`` or ``json``): the
    ``levels``, ``schedule`` or ``modules`` view, as `nestgraph graph` draws it."""
    from nestgraph.errors import UsageProblem
    from nestgraph.viz.drawing import DrawRequest
    from nestgraph.viz.drawing import draw as drawing
    from nestgraph.viz.views import TEXT_FORMATS

    if fmt not in TEXT_FORMATS:
        raise UsageProblem(f"draw() returns text: format '{fmt}' is not one",
                           f"choose {', '.join(TEXT_FORMATS)}, or use nestgraph graph -o "
                           "FILE for pictures")
    (text,) = drawing(spec, list(overrides), DrawRequest(view, fmt, depth), None)
    return text
