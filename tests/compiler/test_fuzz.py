"""Fuzzing in the default suite: a few hundred seeded cases of hostile spec input, every one
accepted or refused with the project's own error; a campaign of 10,000 under `-m slow`.

The harness is `fuzz_specs.py` beside this file (also a script: ``--cases N``).
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("fuzz_specs", Path(__file__).with_name(
    "fuzz_specs.py"))
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_specs"] = fuzz
_spec.loader.exec_module(fuzz)

def _unexpected(tally) -> dict[str, str]:
    """Every crash class found, with an example: none is tolerated."""
    return {kind: tally.examples[kind] for kind in tally.crashes}


def test_a_bounded_campaign_finds_no_internal_error() -> None:
    tally = fuzz.campaign(cases=80, seed=2026, time_limit=8.0)
    assert tally.cases >= 30, tally.summary()
    assert tally.valid > 0 and tally.errors["SpecError"] > 0, tally.summary()
    unexpected = _unexpected(tally)
    assert not unexpected, "\n\n".join(f"{k}\n{v}" for k, v in unexpected.items())


def test_every_shipped_spec_in_both_forms_is_in_the_corpus() -> None:
    found = {(name, form) for name, form, _ in fuzz.corpus()}
    assert ("hope", "yaml") in found and ("hope", "ng") in found
    assert ("optimizers/m3", "ng") in found
    assert len(found) % 2 == 0


def test_a_crash_is_caught_and_classified(monkeypatch: pytest.MonkeyPatch) -> None:
    import nestgraph.compiler

    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(nestgraph.compiler, "compile_spec", broken)
    name, form, text = fuzz.corpus()[0]
    outcome, report = fuzz.run_case(name, form, text, random.Random(5))
    assert outcome in ("crash", "SpecError")  # a mutation may already be refused by the parser
    outcomes = [fuzz.run_case(name, form, text, random.Random(i)) for i in range(20)]
    crashes = [r for o, r in outcomes if o == "crash"]
    assert crashes and fuzz.classify(crashes[0]).startswith("KeyError at ")


def test_the_project_errors_are_tallied_not_crashes() -> None:
    hostile = "nestgraph: 1\nname: x\nmodel: {dim: .nan}\n"
    outcome, _ = fuzz.run_case("x", "yaml", hostile, random.Random(0))
    assert outcome == "SpecError"


@pytest.mark.slow
def test_a_campaign_of_ten_thousand_cases() -> None:
    tally = fuzz.campaign(cases=10_000, seed=0)
    print(tally.summary())
    assert tally.cases == 10_000
    unexpected = _unexpected(tally)
    assert not unexpected, "\n\n".join(f"{k}\n{v}" for k, v in unexpected.items())
