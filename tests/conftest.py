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
def _verify_every_pass(monkeypatch):
    # The compiler checks the graph's invariants after every pass when this is set.
    monkeypatch.setenv("NESTGRAPH_DEBUG", "1")


@pytest.fixture
def overwrite(request) -> bool:
    return request.config.getoption("--overwrite")
