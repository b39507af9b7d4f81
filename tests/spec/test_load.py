"""load_spec end to end: finding a spec, reading it, overrides, validation, the resolved dump."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import nestgraph.spec as front
from nestgraph import load_spec
from nestgraph.errors import SpecError
from nestgraph.spec import dump_resolved, find_spec_file, shipped_specs
from nestgraph.spec.schema import Spec
from nestgraph.spec.source import format_diagnostics
from nestgraph.spec.yaml_front import load_yaml
from nestgraph.testing import MINIMAL_SPEC

SPEC = MINIMAL_SPEC


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for the folder of shipped specs, holding `cms` and `transformer`."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    for name in ("cms", "transformer"):
        (folder / f"{name}.yaml").write_text(SPEC.replace("name: t", f"name: {name}"))
    (folder / "notes.txt").write_text("not a spec")
    monkeypatch.setattr(front, "_shipped_entries", lambda: list(folder.iterdir()))
    return folder


def error_of(*args: object) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_spec(*args)
    return caught.value


def test_load_a_file(spec_file: Path) -> None:
    loaded = load_spec(str(spec_file))
    assert isinstance(loaded.spec, Spec)
    assert loaded.spec.levels[0].every == "1 step"
    assert loaded.spec.levels[0].rule.lr == 0.001
    assert loaded.source.filename == str(spec_file)
    assert loaded.data["modules"] == {"attn": {"type": "attention"}, "mlp": {"type": "mlp"}}


def test_overrides_are_applied_before_validation(spec_file: Path) -> None:
    loaded = load_spec(str(spec_file), ["train.steps=20", "levels.outer.every=2 steps"])
    assert loaded.spec.train.steps == 20
    assert loaded.spec.levels[0].every == "2 steps"
    assert loaded.data["train"] == {"steps": 20}  # the plain data, before defaults
    assert loaded.source.overrides[("train", "steps")] == (1, "train.steps=20")


def test_shipped_spec_by_name(shipped: Path) -> None:
    assert shipped_specs() == {
        "cms": shipped / "cms.yaml",
        "transformer": shipped / "transformer.yaml",
    }
    assert find_spec_file("cms") == shipped / "cms.yaml"
    assert find_spec_file("transformer.yaml") == shipped / "transformer.yaml"
    loaded = load_spec("cms")
    assert loaded.spec.name == "cms"
    assert loaded.source.filename == "specs/cms.yaml"


def test_an_existing_path_wins_over_a_shipped_name(
    shipped: Path, spec_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(spec_file.parent)
    (spec_file.parent / "cms").write_text(SPEC)
    assert find_spec_file("cms") == Path("cms")


def test_unknown_shipped_name(shipped: Path) -> None:
    err = error_of("cmss")
    (d,) = err.diagnostics
    assert d.message == "no spec 'cmss'"
    assert d.hint == "did you mean 'cms'?"
    assert d.notes == ("shipped specs: cms, transformer",)
    assert format_diagnostics(err.diagnostics, err.source).splitlines()[0] == (
        "error[E-FILE]: no spec 'cmss'"
    )


def test_missing_path(shipped: Path, tmp_path: Path) -> None:
    (d,) = error_of(str(tmp_path / "transformr.yaml")).diagnostics
    assert d.message.startswith("no such file") and d.hint == "did you mean 'transformer'?"


def test_a_folder_is_not_a_spec(tmp_path: Path) -> None:
    (d,) = error_of(str(tmp_path)).diagnostics
    assert d.message.endswith("is a folder, not a spec file")


def test_a_ng_suffix_picks_the_dsl_front_end(tmp_path: Path) -> None:
    path = tmp_path / "t.ng"
    path.write_text("level outer {}\n")
    err = error_of(str(path))
    (d,) = err.diagnostics
    assert d.message == "a level's header ends with ':' before its clauses"
    assert format_diagnostics(err.diagnostics, err.source).startswith(f"{path}:1:13: ")


def test_a_shipped_twin_is_found_by_its_ng_name() -> None:
    assert find_spec_file("cms.ng").name == "cms.ng"
    assert find_spec_file("cms").name == "cms.yaml"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(b"name: t\nabout: caf\xe9\n")
    (d,) = error_of(str(path)).diagnostics
    assert d.message == f"'{path}' is not UTF-8 text: byte 0xe9 on line 2, column 11"


def test_byte_order_mark_does_not_shift_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + SPEC.replace("name: t", "name: T").encode())
    err = error_of(str(path))
    assert format_diagnostics(err.diagnostics, err.source).startswith(f"{path}:2:7: ")


def test_all_schema_errors_come_in_one_spec_error(spec_file: Path) -> None:
    spec_file.write_text(
        SPEC.replace("type: attention", "type: atention")
        .replace("lr: 1e-3", "lrr: 1e-3")
        .replace("lifetime: run", "lifetime: runn")
    )
    err = error_of(str(spec_file))
    assert err.source is not None and err.source.filename == str(spec_file)
    report = format_diagnostics(err.diagnostics, err.source)
    heads = [line.split(": error[E-SCHEMA]: ") for line in report.splitlines() if "error[" in line]
    assert [(place.removeprefix(str(spec_file)), msg) for place, msg in heads] == [
        (":6:16", "unknown module type 'atention' for module 'attn'"),
        (":14:5", "missing key 'lr' in rule of level 'outer'"),
        (":14:25", "unknown key 'lrr' in rule of level 'outer'"),
        (":15:15", "'lifetime' in level 'outer': 'runn' is not one of: sequence, stream, run"),
    ]
    assert report.endswith("4 errors")


def test_schema_error_on_an_override_names_the_override(spec_file: Path) -> None:
    err = error_of(str(spec_file), ["train.steps=abc", "levels.outer.lifetime=forever"])
    report = format_diagnostics(err.diagnostics, err.source)
    heads = [line for line in report.splitlines() if "error[" in line]
    assert heads == [
        "override #1 'train.steps=abc': error[E-SCHEMA]: 'steps' in train: input should be a "
        "valid integer, unable to parse string as an integer (got 'abc')",
        "override #2 'levels.outer.lifetime=forever': error[E-SCHEMA]: 'lifetime' in level "
        "'outer': 'forever' is not one of: sequence, stream, run",
    ]


def test_yaml_errors_stop_before_overrides(spec_file: Path) -> None:
    spec_file.write_text(SPEC + "name: u\n")
    err = error_of(str(spec_file), ["nonsense"])
    assert [d.message for d in err.diagnostics] == ["duplicate key 'name'"]


def test_dump_resolved_is_canonical_and_reloads(spec_file: Path) -> None:
    spec_file.write_text(SPEC + "about: '1e-3'\n")
    spec = load_spec(str(spec_file)).spec
    text = dump_resolved(spec)
    assert text == dump_resolved(load_spec(str(spec_file)).spec)
    assert "about: '1e-3'\n" in text  # quoted, or it would read back as a number
    assert "every: 1 step\n" in text and "objective:\n    type: next_token\n" in text
    assert "heldout: 0.05\n" in text  # defaults are written out
    data, _ = load_yaml(text, "resolved.yaml")
    assert Spec.model_validate(data) == spec


@pytest.mark.parametrize("name", sorted(shipped_specs()))
def test_every_shipped_spec_loads(name: str) -> None:
    assert load_spec(name).spec.name == name.replace("-", "_")


def test_the_front_end_does_not_import_torch() -> None:
    code = "import sys, nestgraph.spec; sys.exit('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env={"PYTHONPATH": str(root)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
