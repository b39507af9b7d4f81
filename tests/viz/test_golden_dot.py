"""Every view of every shipped spec, as DOT text, against its golden file (--overwrite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nestgraph.spec import shipped_specs
from nestgraph.testing import compiled_plan as compiled
from nestgraph.viz.views import VIEWS, text

SPECS = (sorted(shipped_specs()) + sorted(shipped_specs(folder="optimizers"))
         + sorted(shipped_specs(folder="ablations")))

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "diagrams"


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("name", SPECS)
def test_view_matches_its_golden_dot(name: str, view: str, overwrite: bool) -> None:
    plan, spec = compiled(name)
    dot = text(plan, spec, view, "dot")
    assert dot == text(plan, spec, view, "dot")  # deterministic
    golden = GOLDEN / f"{name.replace('/', '-')}.{view}.dot"
    if overwrite:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(dot, encoding="utf-8")
    assert golden.is_file(), f"no golden {golden.name}: run pytest --overwrite"
    assert dot == golden.read_text(encoding="utf-8"), f"{golden.name} changed: review, --overwrite"
