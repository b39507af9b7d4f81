"""The tables `nestgraph eval` prints: plain in a pipe, rich on a terminal, nothing cut."""

from __future__ import annotations

import io

from nestgraph.evaluation.report import show

LEVELS = {"rows": [
    {"ablation": "none", "level": "", "kind": "", "lifetime": "", "bpb": 2.0, "delta": 0.0,
     "flagged": False},
    {"ablation": "off", "level": "cms_mid", "kind": "in_context", "lifetime": "sequence",
     "bpb": 2.00001, "delta": 1e-5, "flagged": True},
    {"ablation": "reset", "level": "cms_slow", "kind": "in_context", "lifetime": "stream",
     "bpb": 2.5, "delta": 0.5, "flagged": False}], "threshold": 1e-4}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_table_flags_the_level_that_changes_nothing():
    out = io.StringIO()
    show("levels", LEVELS, out)
    lines = out.getvalue().splitlines()
    mid = next(line for line in lines if "cms_mid" in line)
    slow = next(line for line in lines if "cms_slow" in line)
    assert "changes nothing" in mid and "changes nothing" not in slow and "+0.5000" in slow


def test_a_terminal_gets_a_rich_table_with_the_same_cells():
    out = _Terminal()
    show("recall", {"rows": [{"probe": "needle", "multiple": 4.0, "length": 1025,
                              "accuracy": 0.25, "correct": 2, "answers": 8, "carry": True,
                              "accuracy_without_carry": 0.0}], "finetuned_steps": 3}, out)
    text = out.getvalue()
    assert "eval: recall" in text and "needle" in text and "0.250" in text and "2/8" in text
    assert "after 3 fine-tuning steps" in text
