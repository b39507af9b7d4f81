"""The task functions, called from Python as a benchmark calls them, on a tiny trained run."""

from __future__ import annotations

import math

import pytest
import torch

from nestgraph.evaluation import continual, formal, levels, recall
from nestgraph.evaluation.continual import split_domain
from nestgraph.evaluation.finetune import finetune
from nestgraph.evaluation.generators import copy_string
from nestgraph.evaluation.scoring import accuracy
from nestgraph.runtime.engine import read_sequence


def _by_prefix(loaded, item) -> bool:
    """The slow reference: every answer byte predicted by reading only the text before it."""
    for start, end in item.answers:
        for t in range(start, end):
            x = torch.tensor([list(item.text[:t])])
            y = torch.full_like(x, -1)
            with torch.enable_grad():
                out = read_sequence(loaded.model, loaded.schedule, x, y,
                                    loaded.stream, learn_stream=False, differentiable=False,
                                    keep_logits=True)
            if int(out.logits[0, -1].argmax()) != item.text[t]:
                return False
    return True


def test_accuracy_agrees_with_reading_each_prefix(loaded):
    items = [copy_string(4, seed=s) for s in range(3)]
    expected = sum(_by_prefix(loaded, it) for it in items)
    assert accuracy(loaded, items)["correct"] == expected
    # and with the answers made right by construction: a model that copies is not at hand, so
    # check the other direction too, on an item whose answer is the model's own prediction
    from nestgraph.evaluation.items import Item
    from nestgraph.evaluation.scoring import read

    text = bytearray(items[0].text)
    predictions = read(loaded, torch.tensor([list(text)]), carry=False).predictions[0]
    text[6] = int(predictions[5])  # byte 6 becomes what the model predicts after text[:6]
    own = Item(bytes(text), ((6, 7),))
    assert _by_prefix(loaded, own) and accuracy(loaded, [own])["correct"] == 1


def test_copy_reports_every_language_at_every_size(loaded):
    out = formal.run(loaded, sizes=(2, 4), samples=2)
    assert [(r["language"], r["n"]) for r in out["rows"]] == [
        (lang, n) for n in (2, 4) for lang in ("copy", "parity", "anbn", "anbncn")]
    assert all(0 <= r["accuracy"] <= 1 and r["answers"] >= 1 for r in out["rows"])


def test_recall_at_the_training_length_skips_probes_that_do_not_fit(loaded):
    out = recall.run(loaded, lengths=(1.0,), samples=2)
    rows = {r["probe"]: r for r in out["rows"]}
    assert rows["mqar"]["length"] == loaded.seq_len + 1 and rows["mqar"]["answers"] >= 2
    assert rows["needle"]["accuracy"] is None and "too short" in rows["needle"]["skipped"]


def test_recall_beyond_the_training_length_carries_state(loaded):
    out = recall.run(loaded, lengths=(4.0,), samples=2)
    fitting = [r for r in out["rows"] if r["accuracy"] is not None]
    assert {r["probe"] for r in fitting} >= {"mqar", "needle"}
    assert all(r["carry"] and 0 <= r["accuracy_without_carry"] <= 1 for r in fitting)


def test_continual_can_start_from_the_initial_weights(loaded):
    text = (b"def f(x):\n    return x + 1\n" * 40, b"To be, or not to be: that is it.\n" * 40)
    domains = [split_domain(f"d{i}", t) for i, t in enumerate(text)]
    trained = continual.run(loaded, domains=domains, steps=1, batches=1)
    fresh = continual.run(loaded, domains=domains, steps=1, batches=1, fresh=True)
    assert fresh["before"] != trained["before"]
    again = continual.run(loaded, domains=domains, steps=1, batches=1, fresh=True)
    assert again["matrix"] == fresh["matrix"]  # seeded: the same numbers twice


def test_finetuning_trains_a_copy_and_leaves_the_run_alone(loaded):
    before = {n: p.clone() for n, p in loaded.model.state_dict().items()}
    tuned = finetune(loaded, b"abcabcabc" * 20, steps=1)
    after = loaded.model.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert any(not torch.equal(before[n], t) for n, t in tuned.model.state_dict().items())


def test_continual_fills_the_matrix_and_its_metrics(loaded):
    text = (b"def f(x):\n    return x + 1\n" * 40, b"To be, or not to be: that is it.\n" * 40)
    domains = [split_domain(f"d{i}", t) for i, t in enumerate(text)]
    out = continual.run(loaded, domains=domains, steps=1, batches=1)
    assert out["domains"] == ["d0", "d1"] and len(out["matrix"]) == 2
    assert all(len(row) == 2 and all(math.isfinite(v) for v in row) for row in out["matrix"])
    m = out["matrix"]
    assert out["bwt"] == pytest.approx(m[0][0] - m[1][0])
    assert out["fwt"] == pytest.approx(out["before"][1] - m[0][1])
    assert out["matrix"][0] != out["before"]  # the phase trained


def test_continual_needs_two_domains(loaded):
    from nestgraph.errors import UsageProblem

    with pytest.raises(UsageProblem, match="at least 2 domains"):
        continual.run(loaded, domains=[split_domain("one", b"x" * 400)], steps=1)


def test_the_ablatable_levels_of_cms(loaded):
    names = [lv.name for lv in levels.ablatable(loaded.schedule)]
    assert names == ["cms_fast", "cms_mid", "cms_slow"]


def test_levels_table_has_every_ablation(loaded):
    out = levels.run(loaded, batches=1)
    got = [(r["ablation"], r["level"]) for r in out["rows"]]
    assert got == [("none", ""), ("off", "cms_fast"), ("off", "cms_mid"), ("reset", "cms_slow"),
                   ("learn", "cms_slow"), ("all off", "cms_fast, cms_mid, cms_slow")]
    assert len(out["position_bpb"]["on"]) == loaded.seq_len == len(out["position_bpb"]["off"])
    assert all(r["flagged"] == (abs(r["delta"]) < out["threshold"]) for r in out["rows"][1:])
