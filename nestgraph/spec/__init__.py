"""The spec front end: find a spec, read it safely, apply overrides (reading only).

``read_document("cms", ["train.steps=20"])`` gives the plain data and the `SourceFile` that
places every entry in the file, so that later passes can report problems as
``file:line:col``; the schema (`nestgraph.spec.schema`) validates it, and `nestgraph.load_spec`
runs the compiler's checks too. Nothing here imports the compiler.

This package must stay light: ``nestgraph validate`` imports it and must start quickly, so
nothing here imports torch.
"""

from __future__ import annotations

import difflib
import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nestgraph.errors import Diagnostic, SpecError
from nestgraph.spec.overrides import apply_overrides
from nestgraph.spec.schema import Spec
from nestgraph.spec.source import SourceFile, Span, format_diagnostics
from nestgraph.spec.yaml_front import load_yaml
from nestgraph.spec.yaml_scalars import reads_as_string

__all__ = [
    "read_document",
    "LoadedSpec",
    "SourceFile",
    "dump_resolved",
    "find_spec_file",
    "format_diagnostics",
    "shipped_specs",
]

CODE = "E-FILE"
# Largest spec file read (the shipped specs are under 4 KB). Checked before parsing: parse time
# and memory grow with the text (a 1 MiB .ng file took over 30 s, 256 KiB about 5 s), and a
# spec this size is a mistake or an attack.
MAX_SPEC_BYTES = 256 * 1024
SPEC_SUFFIX = ".yaml"
DSL_SUFFIX = ".ng"


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec, its source map, and the plain data (after overrides) it came from."""

    spec: Spec
    source: SourceFile
    data: dict[str, Any]


# ----------------------------------------------------------------------------- finding


def _shipped_entries() -> list[Any]:
    """The files in the folder of the specs that ship with nestgraph.

    Installed, the repository's ``specs/`` folder is the package ``nestgraph.specs`` (a
    namespace package, whose resource folder is not itself a path, but whose entries are); in a
    plain checkout it is the ``specs/`` folder beside the ``nestgraph/`` package.
    """
    try:
        folder: Any = importlib.resources.files("nestgraph.specs")
    except (ModuleNotFoundError, TypeError, ValueError):
        # Not installed; or an older importlib that cannot read namespace packages.
        folder = None
    if folder is not None and folder.is_dir():
        return list(folder.iterdir())
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "specs", package.parent / "specs"):
        if candidate.is_dir():
            return list(candidate.iterdir())
    return []


def shipped_specs(suffix: str = SPEC_SUFFIX, folder: str = "") -> dict[str, Path]:
    """The shipped specs by name (``cms`` for ``cms.yaml``), sorted by name; with
    ``suffix=".ng"``, their twins in the .ng language; with ``folder="optimizers"``, the
    optimizer specs (named ``optimizers/m3``)."""
    entries = _shipped_entries()
    if folder:
        inner = [e for e in entries if e.name == folder and e.is_dir()]
        entries = list(inner[0].iterdir()) if inner else []
    prefix = f"{folder}/" if folder else ""
    found = {
        prefix + entry.name[: -len(suffix)]: Path(str(entry))
        for entry in entries
        if entry.name.endswith(suffix) and entry.is_file()
    }
    return dict(sorted(found.items()))


SPEC_FOLDERS = ("optimizers", "ablations")


def _shipped_lookup(name_or_path: str) -> Path | None:
    """A shipped spec named like ``cms``, ``cms.yaml``, ``cms.ng`` or ``optimizers/m3``."""
    folder, _, name = name_or_path.rpartition("/")
    if folder and folder not in SPEC_FOLDERS:
        return None
    given = Path(name)
    suffix = DSL_SUFFIX if given.suffix == DSL_SUFFIX else SPEC_SUFFIX
    stem = given.stem if given.suffix in (SPEC_SUFFIX, DSL_SUFFIX) else name
    key = f"{folder}/{stem}" if folder else stem
    return shipped_specs(suffix, folder).get(key)


def _not_found(name_or_path: str, shipped: dict[str, Path]) -> SpecError:
    names = list(shipped)
    looks_like_path = "/" in name_or_path or "\\" in name_or_path or "." in name_or_path
    message = f"no such file '{name_or_path}'" if looks_like_path else f"no spec '{name_or_path}'"
    stem = Path(name_or_path).stem
    hint = ""
    if names:
        match = difflib.get_close_matches(stem, names, n=1, cutoff=0.6)
        hint = f"did you mean '{match[0]}'?" if match else ""
    notes = (f"shipped specs: {', '.join(names)}",) if names else ("no specs are shipped",)
    return SpecError([Diagnostic(message, hint=hint, code=CODE, notes=notes)])


def find_spec_file(name_or_path: str) -> Path:
    """The spec file `name_or_path` names: an existing file, or a shipped spec's name."""
    given = Path(name_or_path)
    if given.is_file():
        return given
    if given.is_dir():
        raise SpecError([Diagnostic(f"'{name_or_path}' is a folder, not a spec file", code=CODE)])
    # `cms` and `cms.yaml` both name the shipped spec, `cms.ng` its twin, `optimizers/m3` an
    # optimizer spec.
    found = _shipped_lookup(name_or_path)
    if found is not None:
        return found
    raise _not_found(name_or_path, shipped_specs())


# ----------------------------------------------------------------------------- loading


def _display_name(path: Path, name_or_path: str) -> str:
    # A shipped spec is shown by its place in the project rather than where it is installed.
    if not Path(name_or_path).is_file():
        return f"specs/{path.name}"
    return name_or_path


def _read(path: Path, shown: str) -> str:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_SPEC_BYTES + 1)
    except OSError as err:
        reason = err.strerror or str(err)
        raise SpecError([Diagnostic(f"cannot read '{shown}': {reason}", code=CODE)]) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise _too_large(raw, shown)
    try:
        # utf-8-sig: a byte-order mark some editors write would otherwise shift column 1.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        bad = raw[err.start]
        message = f"'{shown}' is not UTF-8 text: byte 0x{bad:02x} on line {line}, column {col}"
        raise SpecError([Diagnostic(message, code=CODE, hint="save the file as UTF-8")]) from None


def _too_large(raw: bytes, shown: str) -> SpecError:
    """The error for a file over `MAX_SPEC_BYTES`, placed at its first line."""
    first = raw[: raw.find(b"\n") if b"\n" in raw[:200] else 200]
    source = SourceFile(filename=shown, text=first.decode("utf-8", "replace"))
    source.values[()] = Span(1, 1, 2)
    limit = f"{MAX_SPEC_BYTES // 1024:,} KiB"
    message = f"the spec file is larger than {limit} ({MAX_SPEC_BYTES:,} bytes), the most read"
    hint = "a spec is a few KB: is this the right file?"
    return SpecError([Diagnostic(message, (), hint=hint, code=CODE)], source)


def read_document(name_or_path: str,
                  overrides: list[str] | tuple[str, ...] = ()) -> tuple[Any, SourceFile]:
    """Find and read a spec, apply overrides; the plain data and its source map, unvalidated."""
    path = find_spec_file(name_or_path)
    shown = _display_name(path, name_or_path)
    if path.suffix == DSL_SUFFIX:
        from nestgraph.spec.dsl_front import load_dsl  # lark is imported only for .ng files

        data, source = load_dsl(_read(path, shown), shown)
    else:
        data, source = load_yaml(_read(path, shown), shown)
    return apply_overrides(data, source, list(overrides)), source


# ----------------------------------------------------------------------------- dumping


class _Dumper(yaml.SafeDumper):
    """The safe dumper, quoting strings that our 1.2 reading would take for something else.

    pyyaml decides quoting by YAML 1.1, so it would write the string '1e-3' bare, and reading
    the dump back would give the float 0.001.
    """


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "'" if not reads_as_string(text) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_resolved(spec: Spec) -> str:
    """The validated spec as canonical YAML, every default written out; same spec, same bytes."""
    return yaml.dump(
        spec.model_dump(mode="json"),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )
