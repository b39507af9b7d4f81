"""The schedule and flow passes (classify, order, periods, outer, flow): this graph in, that
attribute or diagnostic out.

Every spec here is the shipped cms spec (or the transformer) with one thing changed, so each
test shows exactly which entry a pass reacts to, and checks that the diagnostic's path points
at that entry of the document.
"""

from __future__ import annotations

import math
import re

import pytest

from nestgraph.compiler import validate_graph
from nestgraph.compiler.ir import facts, owner_of
from nestgraph.spec.schema import Spec
from nestgraph.testing import diagnostics_of as diagnostics
from nestgraph.testing import entry_at as entry
from nestgraph.testing import level_of as level
from nestgraph.testing import only_diagnostic as only
from nestgraph.testing import shipped_data
from nestgraph.testing import validated_graph as run

# Positions of the levels in specs/cms.yaml.
ATTENTION, FAST, MID, SLOW, OUTER = range(5)


def cms() -> dict:
    return shipped_data("cms")


def transformer() -> dict:
    return shipped_data("transformer")


# ------------------------------------------------------------------------------ classify


def test_classify_kinds_of_the_cms_levels() -> None:
    assert facts(run(cms())).kinds == {
        "attention": "nonparametric", "cms_fast": "in_context", "cms_mid": "in_context",
        "cms_slow": "in_context", "outer": "step",
    }


@pytest.mark.parametrize("lifetime", ["sequence", "stream"])
def test_classify_step_level_must_live_for_the_run(lifetime: str) -> None:
    data = cms()
    level(data, "outer")["lifetime"] = lifetime
    d = only(run(data), "E-LEVEL")
    assert d.path == ("levels", OUTER, "lifetime")
    assert d.message == ("level 'outer': a level updated every 1 step(s) keeps its weights for "
                         "the whole run")
    assert d.hint == "write 'lifetime: run'"


def test_classify_in_context_level_must_not_live_for_the_run() -> None:
    data = cms()
    level(data, "cms_slow")["lifetime"] = "run"
    d = only(run(data), "E-LEVEL")
    assert d.path == ("levels", SLOW, "lifetime")


def test_classify_step_level_learns_from_the_corpus() -> None:
    data = cms()
    level(data, "outer")["context"] = "tokens"
    d = only(run(data), "E-LEVEL")
    assert d.path == ("levels", OUTER, "context")
    assert d.hint == "write 'context: corpus'"


def test_classify_adamw_in_context() -> None:
    data = cms()
    level(data, "cms_mid")["rule"] = {"type": "adamw", "lr": 1e-3}
    g = run(data)
    assert facts(g).kinds["cms_mid"] == "in_context"
    d = only(g, "E-LEVEL")
    assert d.path == ("levels", MID, "rule")
    assert d.message == "level 'cms_mid': adamw drives step levels; in context the rule is gd"


def test_classify_in_context_level_owning_attention_weights() -> None:
    data = cms()
    level(data, "cms_fast")["owns"] = ["cms.fast", "attn"]
    g = run(data)
    d = only(g, "E-LEVEL")
    assert d.path == ("levels", FAST, "owns")
    assert d.message == "level 'cms_fast': 'attn' (attention) cannot be updated in context"
    assert owner_of(g, "attn") == "cms_fast"  # `rest` did not take it a second time


def test_classify_closed_form_rule_on_a_step_level() -> None:
    data = cms()
    level(data, "outer")["rule"] = {"type": "closed_form"}
    g = run(data)
    assert facts(g).kinds["outer"] == "step"  # the unit decides the kind
    d = only(g, "E-LEVEL")
    assert d.path == ("levels", OUTER, "rule")
    assert d.message == "level 'outer': a closed-form rule needs an in-context level"


@pytest.mark.parametrize(("key", "value"), [
    ("every", "2 tokens"), ("lifetime", "stream"), ("objective", "next_token"),
])
def test_classify_closed_form_level_is_softmax_attention(key: str, value: str) -> None:
    data = cms()
    level(data, "attention")[key] = value
    g = run(data)
    assert facts(g).kinds["attention"] == "nonparametric"
    d = only(g, "E-LEVEL")
    assert d.path == ("levels", ATTENTION, "rule")
    assert "objective nadaraya_watson, every 1 token, lifetime sequence" in d.message


def test_classify_closed_form_level_owning_weights() -> None:
    data = cms()
    level(data, "attention")["owns"] = ["attn.cache", "attn"]
    d = only(run(data), "E-LEVEL")
    assert d.path == ("levels", ATTENTION, "owns")
    assert d.message == ("level 'attention': 'attn' holds weights, which a closed-form level "
                         "cannot own")


def test_classify_nadaraya_watson_needs_the_closed_form_rule() -> None:
    data = cms()
    level(data, "cms_fast")["objective"] = "nadaraya_watson"
    d = only(run(data), "E-LEVEL")
    assert d.path == ("levels", FAST, "objective")
    assert d.hint == "use rule: {type: closed_form}"


# --------------------------------------------------------------------------------- order


def test_order_by_tokens_ties_by_document_order() -> None:
    g = run(cms())
    assert facts(g).tokens == {"attention": 1, "cms_fast": 16, "cms_mid": 128,
                                 "cms_slow": 4096, "outer": 256}
    assert facts(g).order == ["attention", "cms_fast", "cms_mid", "outer", "cms_slow"]
    data = cms()
    level(data, "cms_slow")["every"] = "256 tokens"
    g = run(data)
    # outer (1 step = 256 tokens) ties with cms_slow; cms_slow comes first in the file.
    assert facts(g).order == ["attention", "cms_fast", "cms_mid", "cms_slow", "outer"]


def test_order_tie_follows_the_document_when_it_changes() -> None:
    data = cms()
    level(data, "cms_slow")["every"] = "256 tokens"
    outer = level(data, "outer")
    data["levels"].remove(outer)
    data["levels"].insert(1, outer)
    g = run(data)
    assert diagnostics(g) == []
    assert facts(g).order == ["attention", "cms_fast", "cms_mid", "outer", "cms_slow"]


def test_order_a_step_counts_seq_len_tokens() -> None:
    data = cms()
    data["train"]["seq_len"] = 8192
    g = run(data)
    assert diagnostics(g) == []
    assert facts(g).tokens["outer"] == 8192
    assert facts(g).order == ["attention", "cms_fast", "cms_mid", "cms_slow", "outer"]


def test_order_nest_edges_chain_the_levels() -> None:
    g = run(cms())
    nest = sorted((u, v) for u, v, k in g.edges(data="kind") if k == "nest")
    order = [f"level:{n}" for n in facts(g).order]
    assert nest == sorted(zip(order[:-1], order[1:], strict=True))
    assert len(nest) == len(order) - 1


# ------------------------------------------------------------------------------- periods


def test_periods_that_do_not_divide_suggest_the_nearest_multiple() -> None:
    data = cms()
    level(data, "cms_slow")["every"] = "4000 tokens"
    d = only(run(data))
    assert (d.code, d.path) == ("E-PERIOD", ("levels", SLOW, "every"))
    assert entry(data, d.path) == "4000 tokens"
    assert d.message == ("level 'cms_slow' updates every 4000 tokens, which is not a multiple of "
                         "the 128 tokens of the faster level 'cms_mid'")
    assert d.hint == "nested levels need periods that divide: try 4096 tokens"
    assert d.notes == ("a step reads train.seq_len = 256 tokens per sequence",)


def test_periods_one_bad_level_is_not_held_against_slower_ones() -> None:
    data = cms()
    level(data, "cms_mid")["every"] = "250 tokens"
    d = only(run(data))
    assert (d.code, d.path) == ("E-PERIOD", ("levels", MID, "every"))
    assert "of the 16 tokens of the faster level 'cms_fast'" in d.message
    assert d.hint.endswith("try 128 tokens")  # 256 = seq_len would be refused


def test_periods_equal_periods_are_fine() -> None:
    data = cms()
    level(data, "cms_slow")["every"] = "256 tokens"
    level(data, "cms_slow")["lifetime"] = "stream"
    assert diagnostics(run(data)) == []


def test_periods_suggested_period_divides_by_every_faster_level() -> None:
    data = cms()
    level(data, "cms_fast")["every"] = "2 tokens"
    level(data, "cms_mid")["every"] = "12 tokens"
    level(data, "cms_slow")["every"] = "27 tokens"
    d = next(d for d in diagnostics(run(data)) if d.path == ("levels", SLOW, "every"))
    suggested = int(re.search(r"try (\d+) tokens", d.hint).group(1))
    assert suggested % math.lcm(1, 2, 12) == 0


def test_periods_sequence_level_longer_than_a_sequence() -> None:
    data = cms()
    level(data, "cms_mid")["every"] = "512 tokens"
    g = run(data)
    d = only(g)
    assert (d.code, d.path) == ("E-PERIOD", ("levels", MID, "every"))
    assert d.message == ("level 'cms_mid' would never change a prediction: its first update, "
                         "at token 512, comes after the sequence has ended (256 tokens), and "
                         "its state resets every sequence")
    assert facts(g).order == ["attention", "cms_fast", "outer", "cms_mid", "cms_slow"]


def test_periods_stream_level_may_outlast_a_sequence() -> None:
    data = cms()
    data["train"]["seq_len"] = 512  # cms_slow (4096 tokens, stream) spans eight sequences
    assert diagnostics(run(data)) == []


# --------------------------------------------------------------------------------- outer


def test_outer_sequence_level_without_a_step_level() -> None:
    data = cms()
    data["levels"].remove(level(data, "outer"))
    g = run(data)
    assert facts(g).init_owner is None
    found = [d for d in diagnostics(g, "E-LEVEL") if "resets every sequence" in d.message]
    assert len(found) == 1
    d = found[0]
    assert d.path == ("levels", FAST, "lifetime")  # the first sequence-lifetime level
    assert d.message == ("level 'cms_fast' resets every sequence, but no level updated every N "
                         "steps learns its initial state")


def test_outer_the_slowest_step_level_learns_the_initial_states() -> None:
    assert facts(run(cms())).init_owner == "outer"


def test_outer_stream_levels_need_no_step_level() -> None:
    data = cms()
    data["levels"].remove(level(data, "outer"))
    for name in ("cms_fast", "cms_mid"):
        level(data, name)["lifetime"] = "stream"
    g = run(data)
    assert not [d for d in diagnostics(g) if "resets every sequence" in d.message]


# ---------------------------------------------------------------------------------- flow


def test_flow_two_cycle_reported_once_with_its_path() -> None:
    data = cms()
    level(data, "attention")["context"] = "output of cms_mid"
    level(data, "cms_mid")["context"] = "output of attention"
    g = run(data)
    d = only(g, "E-FLOW")
    assert d.message == "context flow cycle: attention -> cms_mid -> attention"
    assert d.path == ("levels", ATTENTION, "context")
    assert d.notes == (f"level 'attention' learns from 'cms_mid' (levels[{ATTENTION}].context)",
                       f"level 'cms_mid' learns from 'attention' (levels[{MID}].context)")


def test_flow_three_cycle_reported_once_with_its_path() -> None:
    data = cms()
    level(data, "cms_fast")["context"] = "output of cms_mid"
    level(data, "cms_mid")["context"] = "output of cms_slow"
    level(data, "cms_slow")["context"] = "gradients of cms_fast"
    g = run(data)
    d = only(g, "E-FLOW")
    # Data flows cms_fast -> cms_slow -> cms_mid -> cms_fast; the message starts at the
    # alphabetically first level.
    assert d.message == "context flow cycle: cms_fast -> cms_slow -> cms_mid -> cms_fast"
    assert d.path == ("levels", FAST, "context")
    assert len(d.notes) == 3


def test_flow_chain_without_cycle_is_fine() -> None:
    data = cms()
    level(data, "cms_slow")["context"] = "output of attention"
    level(data, "attention")["context"] = "output of cms_mid"
    g = run(data)
    assert diagnostics(g, "E-FLOW") == []


def test_flow_two_cycle_between_adjacent_levels() -> None:
    data = cms()
    level(data, "cms_fast")["context"] = "output of cms_mid"
    level(data, "cms_mid")["context"] = "output of cms_fast"
    d = only(run(data), "E-FLOW")
    assert d.message == "context flow cycle: cms_fast -> cms_mid -> cms_fast"


# --------------------------------------------------------------------------- idempotence


@pytest.mark.parametrize("broken", [False, True])
def test_validate_graph_twice_gives_the_same_answer(broken: bool) -> None:
    data = cms()
    if broken:
        level(data, "cms_slow")["every"] = "4000 tokens"
        level(data, "cms_mid")["owns"] = ["cms.mdi"]
        data["modules"]["spare"] = {"type": "mlp"}
    spec = Spec.model_validate(data)
    first, second = validate_graph(spec), validate_graph(spec)
    assert first is not second
    assert facts(first).diagnostics == facts(second).diagnostics
    assert bool(facts(first).diagnostics) is broken
    for key in ("order", "kinds", "tokens", "init_owner"):
        assert getattr(facts(first), key) == getattr(facts(second), key)
    assert sorted(first.edges(data="kind")) == sorted(second.edges(data="kind"))
