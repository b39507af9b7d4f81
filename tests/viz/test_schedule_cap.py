"""The schedule view of a valid spec with a huge period draws a bounded number of cells."""

from __future__ import annotations

import json
import time

from nestgraph.viz.schedule import MAX_CELLS, schedule
from nestgraph.viz.views import text

HUGE = 10**12


def _plan(slow_tokens: int) -> dict:
    level = lambda name, tokens, every: {"name": name, "tokens": tokens, "every": every}  # noqa: E731
    return {"name": "big", "train": {"seq_len": 256},
            "levels": [level("fast", 8, "8 tokens"), level("outer", 256, "1 step"),
                       level("slow", slow_tokens, f"{slow_tokens} tokens")]}


def test_a_10_to_the_12_token_period_is_capped_and_says_so() -> None:
    plan = _plan(HUGE)
    start = time.perf_counter()
    s = schedule(plan)
    dot = text(plan, None, "schedule", "dot")
    mermaid = text(plan, None, "schedule", "mermaid")
    data = json.loads(text(plan, None, "schedule", "json"))
    assert time.perf_counter() - start < 2.0
    step, hyper = s.panels
    assert not step.capped and step.columns == 32
    assert hyper.capped and hyper.columns == MAX_CELLS and hyper.total == HUGE // 256
    counts = {r.level: r.count for r in hyper.rows}
    assert counts == {"outer": HUGE // 256, "slow": 1}
    assert all(len(r.fires) <= MAX_CELLS for p in s.panels for r in p.rows)
    note = f"the first {MAX_CELLS:,} of {HUGE // 256:,} cells shown"
    assert note in dot and note in mermaid
    assert f"{HUGE // 256:,}×" in dot  # the row still counts every firing
    assert dot.count("<td") < 10 * MAX_CELLS
    assert mermaid.count("\n") < 3 * MAX_CELLS
    assert [p["capped"] for p in data["panels"]] == [False, True]


def test_a_schedule_within_the_cap_is_drawn_whole() -> None:
    s = schedule(_plan(4096))
    hyper = s.panels[1]
    assert not hyper.capped and hyper.columns == hyper.total == 16
    assert {r.level: len(r.fires) for r in hyper.rows} == {"outer": 16, "slow": 1}
    assert "cells shown" not in text(_plan(4096), None, "schedule", "dot")
