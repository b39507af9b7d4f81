"""The wheel is what users get: build it, install it into a fresh virtual environment and use it
from a folder outside the checkout.

The root folders `compiler/`, `viz/` and `specs/` are installed as `nestgraph.compiler`,
`nestgraph.viz` and `nestgraph.specs` (pyproject.toml, `[tool.setuptools]`). Every subpackage is
listed by hand there, so a new folder that is not listed would be silently left out of the wheel
while the editable install of a developer keeps working. These tests catch that.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path, PurePosixPath

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
ROOT_PACKAGE = "nestgraph"
SHIPPED_SPECS = ("cms.yaml", "transformer.yaml")
# .ng twins and the optimizer specs' folder travel in the wheel too
WHEEL_SPEC_FILES = (*SHIPPED_SPECS, "hope.ng", "optimizers/m3.yaml", "optimizers/m3.ng")
# Names that must never be importable on their own, nor appear at the top of the wheel.
FOLDED_IN = ("compiler", "viz", "specs")
NOT_SHIPPED = (*FOLDED_IN, "tests")
TIMEOUT = 120


def _setuptools_config() -> dict:
    with PYPROJECT.open("rb") as handle:
        return tomllib.load(handle)["tool"]["setuptools"]


def _package_dir(package: str, mapping: dict[str, str]) -> Path:
    """The source folder of `package`, following `[tool.setuptools.package-dir]`."""
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in mapping:
            return ROOT.joinpath(mapping[prefix], *parts[cut:])
    return ROOT.joinpath(mapping.get("", ""), *parts)


def _listed_package_dirs() -> dict[Path, str]:
    config = _setuptools_config()
    mapping = config.get("package-dir", {})
    return {_package_dir(name, mapping).resolve(): name for name in config["packages"]}


def _source_roots() -> list[Path]:
    """The folders whose Python files end up in the wheel: `nestgraph/` and the mapped ones."""
    mapping = _setuptools_config().get("package-dir", {})
    roots = {ROOT / ROOT_PACKAGE, *(ROOT / folder for folder in mapping.values())}
    return sorted(root for root in roots if root.is_dir())


def _python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _expected_wheel_modules() -> set[str]:
    """Every Python file of the checkout as `nestgraph/...py`, the path it must have in the wheel,
    whether or not its folder is listed in pyproject.toml."""
    mapping = _setuptools_config().get("package-dir", {})
    folders = {ROOT_PACKAGE: ROOT / ROOT_PACKAGE}
    folders.update((package, ROOT / folder) for package, folder in mapping.items() if package)
    expected = set()
    for package, folder in folders.items():
        if folder.is_dir():
            for path in _python_files(folder):
                rel = path.relative_to(folder).parts
                expected.add("/".join([*package.split("."), *rel]))
    return expected


# ----------------------------------------------------------------------------- cheap checks


def test_listed_packages_cover_every_python_file():
    listed = _listed_package_dirs()
    roots = _source_roots()
    assert {root.name for root in roots} >= {ROOT_PACKAGE, "compiler", "viz"}, roots

    unlisted: dict[Path, list[str]] = {}
    for root in roots:
        for path in _python_files(root):
            folder = path.parent.resolve()
            if folder not in listed:
                unlisted.setdefault(folder, []).append(path.name)
    message = "\n".join(
        f"  {folder.relative_to(ROOT)}/ ({', '.join(names)})"
        for folder, names in sorted(unlisted.items())
    )
    assert not unlisted, (
        "these folders hold Python files but are not listed in pyproject.toml "
        "[tool.setuptools] packages, so the wheel would leave them out:\n" + message
        + "\nadd each one as a dotted package name (for example 'nestgraph.compiler.passes')"
    )


def test_listed_packages_exist():
    missing = [
        f"{name} -> {folder.relative_to(ROOT)}/"
        for folder, name in _listed_package_dirs().items()
        if not folder.is_dir()
    ]
    assert not missing, f"pyproject.toml lists packages with no folder: {missing}"


# ----------------------------------------------------------------------------- the wheel


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "VIRTUAL_ENV",
                 "PYTHONUSERBASE", "__PYVENV_LAUNCHER__"):
        env.pop(name, None)
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               PYTHONDONTWRITEBYTECODE="1")
    return env


def _run(args: list[str | Path], cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=_clean_env(), text=True,
                          capture_output=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, (
        f"{what} failed (exit {done.returncode}): {' '.join(map(str, args))}\n"
        f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    )
    return done


def _copy_sources(dest: Path) -> None:
    """Copy what the build reads, so it neither reads stale files from nor writes into the
    checkout (setuptools keeps `build/lib` and `*.egg-info` next to pyproject.toml)."""
    dest.mkdir()
    for entry in ROOT.iterdir():
        if entry.is_file():
            shutil.copy2(entry, dest / entry.name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for root in _source_roots():
        shutil.copytree(root, dest / root.name, ignore=ignore)


def _build_wheel(source: Path, outdir: Path) -> Path:
    if importlib.util.find_spec("build") is not None:
        # --no-isolation: no download of setuptools; `build` still checks that the installed
        # setuptools satisfies [build-system] requires and says so if it does not.
        args = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", outdir,
                source]
    else:
        args = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                "--no-index", "-w", outdir, source]
    _run(args, cwd=source, what="building the wheel")
    wheels = sorted(outdir.glob(f"{ROOT_PACKAGE}-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


class Installed:
    def __init__(self, wheel: Path, venv: Path, neutral: Path):
        self.wheel = wheel
        self.venv = venv
        self.neutral = neutral
        self.bin = venv / ("Scripts" if os.name == "nt" else "bin")
        self.python = self.bin / ("python.exe" if os.name == "nt" else "python")
        with zipfile.ZipFile(wheel) as archive:
            self.names = archive.namelist()
            record = next(n for n in self.names if n.endswith(".dist-info/RECORD"))
            rows = csv.reader(io.StringIO(archive.read(record).decode()))
            self.record = [row[0] for row in rows if row]

    def run(self, *args: str | Path, what: str) -> subprocess.CompletedProcess[str]:
        return _run(list(args), cwd=self.neutral, what=what)

    def probe(self, code: str) -> dict:
        """Run `code` with the venv's Python from the neutral folder; it prints one JSON line."""
        done = self.run(self.python, "-c", textwrap.dedent(code), what="the installed wheel")
        return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    if importlib.util.find_spec("venv") is None or importlib.util.find_spec("pip") is None:
        pytest.skip("needs the `venv` module and pip")
    base = tmp_path_factory.mktemp("packaging")
    source, dist, venv, neutral = (base / name for name in ("src", "dist", "venv", "neutral"))
    _copy_sources(source)
    wheel = _build_wheel(source, dist)

    # The venv sees the site-packages of the interpreter running the tests (torch and the rest
    # are not reinstalled), and its own site-packages comes first, so the wheel shadows a
    # developer's editable install. Without a pip of its own: the outer pip, run by the venv's
    # Python, installs into the venv.
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base,
         what="creating the venv")
    neutral.mkdir()
    inst = Installed(wheel, venv, neutral)
    _see_outer_packages(inst)
    inst.run(inst.python, "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall",
             wheel, what="installing the wheel")
    return inst


def _see_outer_packages(inst: Installed) -> None:
    """Put this interpreter's site-packages folders on the venv's path with a `.pth` file.

    `venv --system-site-packages` would not do: run from inside a virtual environment (the
    usual way to run these tests) it exposes the base interpreter's packages, not the ones the
    user installed. Folders named in a `.pth` file are added after the venv's own, and their
    own `.pth` files are not run, so an editable install outside stays invisible.
    """
    outer = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    purelib = inst.run(inst.python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                       "['purelib'])", what="finding the venv's site-packages").stdout.strip()
    Path(purelib).mkdir(parents=True, exist_ok=True)
    (Path(purelib) / "outer-packages.pth").write_text("".join(p + "\n" for p in outer))


def _wheel_modules(names: list[str]) -> list[str]:
    return sorted(n for n in names if n.startswith(f"{ROOT_PACKAGE}/") and n.endswith(".py"))


def test_wheel_contents(installed: Installed):
    names = installed.names
    tops = {PurePosixPath(n).parts[0] for n in names}
    assert not tops & set(NOT_SHIPPED), f"the wheel has top-level {sorted(tops & set(NOT_SHIPPED))}"
    assert {t for t in tops if not t.endswith(".dist-info")} == {ROOT_PACKAGE}, sorted(tops)
    for spec in WHEEL_SPEC_FILES:
        assert f"{ROOT_PACKAGE}/specs/{spec}" in names, f"{spec} is not in the wheel"

    shipped = set(_wheel_modules(names))
    missing = sorted(_expected_wheel_modules() - shipped)
    assert not missing, f"Python files of the checkout missing from the wheel: {missing}"


def test_every_module_imports_from_the_wheel(installed: Installed):
    modules = []
    for name in _wheel_modules(installed.record):
        parts = list(PurePosixPath(name).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue  # runs the command on import; exercised below with `python -m`
        if parts[-1] == "__init__":
            parts.pop()
        modules.append(".".join(parts))
    assert f"{ROOT_PACKAGE}.compiler.passes" in modules, f"no compiler passes in the wheel: {modules}"

    found = installed.probe(f"""
        import importlib, json, sys
        failed, files = {{}}, {{}}
        for name in {modules!r}:
            try:
                files[name] = importlib.import_module(name).__file__
            except Exception as err:
                failed[name] = f"{{type(err).__name__}}: {{err}}"
        print(json.dumps({{"failed": failed, "files": files, "prefix": sys.prefix}}))
    """)
    assert not found["failed"], f"modules of the wheel that do not import: {found['failed']}"
    assert Path(found["prefix"]).resolve() == installed.venv.resolve()
    venv = installed.venv.resolve()
    outside = {m: f for m, f in found["files"].items() if venv not in Path(f).resolve().parents}
    assert not outside, f"imported from outside the venv (editable install not shadowed?): {outside}"


def test_folded_in_folders_are_not_top_level_names(installed: Installed):
    found = installed.probe(f"""
        import importlib.util, json
        print(json.dumps({{n: importlib.util.find_spec(n) is not None for n in {FOLDED_IN!r}}}))
    """)
    importable = [name for name, present in found.items() if present]
    assert not importable, f"importable as top-level names from the wheel: {importable}"


def test_installed_command_finds_shipped_specs(installed: Installed):
    found = installed.probe("""
        import json
        from nestgraph.spec import shipped_specs
        print(json.dumps({name: str(path) for name, path in {
            **shipped_specs(), **shipped_specs(folder="optimizers"),
            **shipped_specs(folder="ablations")}.items()}))
    """)
    assert {f"{name}.yaml" for name in found} >= {*SHIPPED_SPECS, "optimizers/m3.yaml"}, found
    venv = installed.venv.resolve()
    assert all(venv in Path(p).resolve().parents for p in found.values()), found

    script = installed.bin / ("nestgraph.exe" if os.name == "nt" else "nestgraph")
    assert script.is_file(), f"the wheel installed no `nestgraph` command in {installed.bin}"
    installed.run(script, "validate", "cms", what="`nestgraph validate cms`")
    version = installed.run(installed.python, "-m", ROOT_PACKAGE, "--version",
                            what="`python -m nestgraph --version`")
    assert version.stdout.strip().startswith(ROOT_PACKAGE), version.stdout
