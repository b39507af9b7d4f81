"""Build folders and run folders as the CLI sees them: writing, finding, checking, loading.

A build or run folder holds a generated ``program.py`` that `train` and `generate` import, so
the folder is code. Before importing it they compile the folder's ``spec.resolved.yaml`` again
and refuse a program whose bytes differ (`check_program`), unless told to trust it.
"""

from __future__ import annotations

import json
from pathlib import Path

from nestgraph.console import status
from nestgraph.errors import (
    EnvironmentProblem,
    SpecError,
    TrainingError,
    UsageProblem,
)
from nestgraph.escape import printable

BUILD_ROOT = Path("build")
LATEST = "latest"
ORIGIN = "origin.json"  # where the spec came from: relative data paths are taken from there
RESOLVED = "spec.resolved.yaml"




def cannot_write(path: Path, err: OSError) -> EnvironmentProblem:
    reason = err.strerror or str(err)
    return EnvironmentProblem(f"cannot write '{printable(str(path))}': {reason}",
                              "choose another folder with -o, or make this one writable")


def write_build(result, source, overrides: list[str], out: Path | None,
                spec_folder: Path | None = None) -> Path:
    """Write program.py, plan.json, the spec as given and resolved; the folder written.

    `spec_folder`, the folder of the spec file, is recorded in ``origin.json``: a relative
    ``data.source`` in a spec means "next to the spec", wherever `train` is run from.
    A folder that cannot be written is an `EnvironmentProblem` (exit 6) naming the path.
    """
    from nestgraph.fsutil import atomic_write_text

    folder = out or BUILD_ROOT / result.spec.name
    # The spec as given keeps its language: spec.ng for a .ng file, spec.yaml otherwise.
    given = "spec.ng" if source is not None and source.filename.endswith(".ng") else "spec.yaml"
    files = {
        "program.py": result.program,
        "plan.json": json.dumps(result.plan, indent=2) + "\n",
        RESOLVED: result.resolved_yaml,
        given: source.text if source is not None else result.resolved_yaml,
        "overrides.txt": "".join(o + "\n" for o in overrides),
    }
    if spec_folder is not None:
        files[ORIGIN] = json.dumps({"spec_folder": str(Path(spec_folder).resolve())}) + "\n"
    target = folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            target = folder / name
            atomic_write_text(target, text)
    except OSError as err:
        raise cannot_write(target, err) from None
    return folder


def mark_latest(folder: Path) -> None:
    """Record `folder` as the most recent build (`nestgraph train` with no BUILD trains it)."""
    from nestgraph.fsutil import atomic_write_text

    try:
        BUILD_ROOT.mkdir(exist_ok=True)
        atomic_write_text(BUILD_ROOT / LATEST, str(Path(folder).resolve()) + "\n")
    except OSError as err:
        raise cannot_write(BUILD_ROOT / LATEST, err) from None






# --------------------------------------------------------------------------- the summary















# ----------------------------------------------------------------------------- finding


def is_build(path: Path) -> bool:
    return path.is_dir() and (path / "program.py").is_file()


def find_build(words: list[str]) -> Path:
    """The build folder named by `words` (at most one), else the most recent build."""
    if len(words) > 1:
        raise UsageProblem(f"expected at most one build folder, got {printable(' '.join(words))}")
    if words:
        folder = Path(words[0])
        if not is_build(folder):
            shown = printable(str(folder))
            raise UsageProblem(f"'{shown}' is not a build folder (no program.py in it)",
                               f"compile a spec first: nestgraph compile SPEC -o {shown}")
        return folder
    latest = BUILD_ROOT / LATEST
    if latest.is_file():
        folder = Path(latest.read_text().strip())
        if is_build(folder):
            status(f"using the most recent build: {printable(str(folder))}")
            return folder
    raise UsageProblem("no build to train", "compile a spec first: nestgraph compile "
                         "specs/cms.yaml, or name a spec: nestgraph train cms")


# ---------------------------------------------------------------- the program is code


def check_program(folder: Path, *, trust: bool = False) -> None:
    """Refuse a folder whose program.py is not what its spec.resolved.yaml compiles to.

    `train` and `generate` import program.py: a changed file would run whatever it says. The
    program is compiled again in memory and compared byte for byte; a difference, or a folder
    without its resolved spec, is a `TrainingError` (exit 5) unless `trust` is set.
    """
    if trust:
        return
    from nestgraph.compiler import compile_spec
    from nestgraph.spec import read_document

    shown = printable(str(folder))
    resolved = folder / RESOLVED
    hint = ("recompile the spec into a new folder, or pass --trust-program to run the file "
            "as it is (it is Python code: read it first)")
    if not resolved.is_file():
        raise TrainingError(f"'{shown}' has no {RESOLVED} to check its program.py against",
                            hint)
    try:
        expected = compile_spec(*read_document(str(resolved))).program
    except SpecError as err:
        raise TrainingError(f"the {RESOLVED} in '{shown}' does not compile "
                            f"({err.message}), so its program.py cannot be checked",
                            hint) from None
    actual = (folder / "program.py").read_bytes()
    if actual != expected.encode("utf-8"):
        raise TrainingError(f"'{shown}/program.py' is not the program its {RESOLVED} "
                            "compiles to (it was edited, or written by another version)", hint)


# ------------------------------------------------------------------------ train settings






def load_run(run: Path, *, trust: bool = False):
    """The model, program, stream state and settings of a run's latest checkpoint."""
    from nestgraph.runtime.engine import init_stream
    from nestgraph.runtime.program import load_program
    from nestgraph.runtime.train import checkpoint as ckpt

    if not (run / "program.py").is_file():
        raise UsageProblem(f"'{printable(str(run))}' is not a run folder (no program.py in it)",
                           "pass a folder under runs/NAME/")
    found = ckpt.latest_checkpoint(run)
    if found is None:
        raise UsageProblem(f"run '{printable(str(run))}' has no checkpoint yet")
    check_program(run, trust=trust)
    program = load_program(run)
    weights, state, meta = ckpt.load_checkpoint(found)
    cfg = meta.get("train", program.train)  # the settings the run actually trained with
    model = program.build_model()
    if cfg["precision"] == "fp64":
        model = model.double()
    model.load_state_dict(weights)
    stream = init_stream(model, program.schedule)
    stream.load_state_dict(state["stream"])
    return model, program, stream, cfg


def spec_folder_of(folder: Path) -> Path | None:
    """The folder of the spec a build (or a run copied from it) was compiled from, if known."""
    try:
        return Path(json.loads((Path(folder) / ORIGIN).read_text(encoding="utf-8"))["spec_folder"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


DATA_PATHS = ("data.source", "data.heldout_source", "data.tokenizer", "train.init")  # files
_NOT_PATHS = ("", "stdlib", "null", "~")  # the words these keys take that name no file


def _tokenizer_word(key: str, value: str) -> bool:
    """``data.tokenizer=bytes`` and ``data.tokenizer={bpe: N}`` name no file."""
    return key == "data.tokenizer" and (value == "bytes" or value.lstrip().startswith("{"))


def absolute_data_overrides(overrides: list[str]) -> list[str]:
    """``data.source=REL`` typed on the command line means REL from the working folder: make it
    absolute, so that it is not taken from the spec's folder later."""
    fixed = []
    for item in overrides:
        key, eq, value = item.partition("=")
        if eq and key.strip() in DATA_PATHS and value not in _NOT_PATHS \
                and not _tokenizer_word(key.strip(), value):
            path = Path(value).expanduser()
            item = f"{key}={path if path.is_absolute() else Path.cwd() / path}"
        fixed.append(item)
    return fixed
