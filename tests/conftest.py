"""Shared test settings: stricter than users' (every pass verified), golden-file switch."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"


def pytest_addoption(parser):
    parser.addoption("--overwrite", action="store_true",
                     help="rewrite the golden files under tests/golden/ instead of comparing")


@pytest.fixture(autouse=True)
def _builds_stay_in_tmp(monkeypatch, tmp_path):
    # Every `compile` records its folder as the most recent build under build/ of the working
    # folder; tests keep that record (and default build folders) in their own tmp_path.
    import nestgraph.compiler.buildfolder

    monkeypatch.setattr(nestgraph.compiler.buildfolder, "BUILD_ROOT", tmp_path / "build")


@pytest.fixture(autouse=True)
def _verify_every_pass(monkeypatch):
    # The compiler checks the graph's invariants after every pass when this is set. The CLI
    # also reads it as --debug (tracebacks); tests of user errors expect none, so in-process
    # commands ignore the variable unless a test asks for it (tests/cli/test_arguments.py).
    monkeypatch.setenv("NESTGRAPH_DEBUG", "1")
    import nestgraph.cli.common

    monkeypatch.setattr(nestgraph.cli.common, "_env_debug", lambda: False)


@pytest.fixture
def overwrite(request) -> bool:
    return request.config.getoption("--overwrite")
