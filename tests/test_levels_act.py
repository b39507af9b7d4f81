"""Every level of every shipped spec acts: switching it off changes the held-out loss.

A level that compiles but never changes a prediction is a bug even when its equations are right
(a CMS level that fired after a sequence's last token and was then reset once did exactly
that). Each shipped spec is trained at a small width, long enough for its stream levels to
fire at least once, and scored by `nestgraph eval`'s levels task: no `off` (in-context and
memory levels) or `reset` (stream levels) ablation may be flagged as changing nothing.
"""

from __future__ import annotations

import pytest

from nestgraph.evaluation import levels
from nestgraph.evaluation.loaded import load
from nestgraph.runtime.program import load_program
from nestgraph.runtime.train.loop import train
from nestgraph.runtime.train.progress import SilentReporter
from nestgraph.spec import shipped_specs
from nestgraph.testing import compile_build

SMALL = ["model.dim=16", "train.batch=1", "train.eval_batches=1", "train.eval_every=0",
         "train.log_every=1000", "train.threads=1", "data.max_bytes=100000"]


def learning_specs() -> list[str]:
    """Shipped specs with at least one level that learns while reading."""
    from nestgraph.compiler import compile_spec
    from nestgraph.spec import read_document

    out = []
    for name in sorted(shipped_specs()):
        plan = compile_spec(*read_document(name), stop_after="plan").plan
        if any(lv["kind"] in ("in_context", "memory") for lv in plan["levels"]):
            out.append(name)
    return out


def steps_for_stream(program) -> int:
    """Enough steps that every stream level fires at least once (and never fewer than 2)."""
    seq_len = program.train["seq_len"]
    periods = [lv.period for lv in program.schedule if lv.lifetime == "stream"]
    return max([2, *[p // seq_len + 1 for p in periods]])


@pytest.mark.parametrize("name", learning_specs())
def test_every_level_changes_the_heldout_loss(name, tmp_path):
    program = load_program(compile_build(tmp_path / "build", name, SMALL))
    cfg = dict(program.train, steps=steps_for_stream(program))
    result = train(program, cfg, program.data, out=tmp_path / "runs", reporter=SilentReporter())
    table = levels.run(load(result.run_dir), batches=1)
    checked = [r for r in table["rows"] if r["ablation"] in ("off", "reset")]
    assert {r["level"] for r in checked} == set(table["levels"])
    idle = [f"{r['ablation']} {r['level']} ({r['delta']:+.2e} bpb)" for r in checked
            if r["flagged"]]
    assert not idle, f"{name}: levels whose ablation changes nothing: {', '.join(idle)}"


def test_a_level_that_learns_nothing_is_flagged(tmp_path):
    """The check above can fail: a CMS level whose steps are vanishingly small is flagged."""
    program = load_program(compile_build(tmp_path / "build", "cms",
                                         [*SMALL, "levels.cms_mid.rule.lr=1e-12"]))
    result = train(program, dict(program.train, steps=2), program.data, out=tmp_path / "runs",
                   reporter=SilentReporter())
    rows = {(r["ablation"], r["level"]): r for r in levels.run(load(result.run_dir),
                                                                batches=1)["rows"]}
    assert rows[("off", "cms_mid")]["flagged"] and abs(rows[("off", "cms_mid")]["delta"]) < 1e-6
    assert not rows[("off", "cms_fast")]["flagged"]
