"""The validation passes, one section each: this graph in, that attribute (or diagnostic) out.

Every spec here is the shipped cms spec (or the transformer) with one thing changed, so each
test shows exactly which entry a pass reacts to, and checks that the diagnostic's path points
at that entry of the document.
"""

from __future__ import annotations

import copy
import functools
import math
import re

import networkx as nx
import pytest

from nestgraph.compiler import validate_graph
from nestgraph.compiler.ir import owned_by, owner_of
from nestgraph.errors import Diagnostic
from nestgraph.spec import read_document
from nestgraph.spec.salvage import salvage
from nestgraph.spec.schema import Spec

# Positions of the levels in specs/cms.yaml.
ATTENTION, FAST, MID, SLOW, OUTER = range(5)


@functools.cache
def _shipped(name: str) -> dict:
    data, _ = read_document(name)
    return data


def cms() -> dict:
    return copy.deepcopy(_shipped("cms"))


def transformer() -> dict:
    return copy.deepcopy(_shipped("transformer"))


def level(data: dict, name: str) -> dict:
    return next(lv for lv in data["levels"] if lv["name"] == name)


def run(data: dict) -> nx.DiGraph:
    return validate_graph(Spec.model_validate(data))


def diagnostics(g: nx.DiGraph, code: str | None = None) -> list[Diagnostic]:
    return [d for d in g.graph["diagnostics"] if code is None or d.code == code]


def only(g: nx.DiGraph, code: str | None = None) -> Diagnostic:
    found = diagnostics(g, code)
    assert len(found) == 1, found
    return found[0]


def entry(data: dict, path: tuple):
    """The document entry a diagnostic's path names."""
    node = data
    for key in path:
        node = node[key]
    return node


def test_the_shipped_specs_are_clean() -> None:
    assert diagnostics(run(cms())) == []
    assert diagnostics(run(transformer())) == []


# ------------------------------------------------------------------------------- resolve


def test_resolve_unknown_owns_item_with_a_did_you_mean() -> None:
    data = cms()
    level(data, "cms_mid")["owns"] = ["cms.mdi"]
    g = run(data)
    d = only(g, "E-NAME")
    assert d.path == ("levels", MID, "owns", 0)
    assert entry(data, d.path) == "cms.mdi"
    assert d.message == "level 'cms_mid' owns 'cms.mdi', which is not a state of the model"
    assert d.hint == "did you mean 'cms.mid'?"
    assert d.notes == ("ownable: attn, attn.cache, cms.fast, cms.mid, cms.slow, embedding, "
                       "norms, cms, rest",)
    assert owned_by(g, "cms_mid") == []


def test_resolve_owns_a_module_name_as_all_its_weights() -> None:
    data = cms()
    for name in ("cms_fast", "cms_mid", "cms_slow"):
        data["levels"].remove(level(data, name))
    level(data, "outer")["owns"] = ["cms", "rest"]
    g = run(data)
    assert diagnostics(g) == []
    edges = {(v, d["item"]) for _, v, d in g.out_edges("level:outer", data=True)
             if d["kind"] == "owns"}
    assert edges == {("part:cms.fast", 0), ("part:cms.mid", 0), ("part:cms.slow", 0),
                     ("part:attn", 1), ("part:embedding", 1), ("part:norms", 1)}


def test_resolve_unknown_context_level() -> None:
    data = cms()
    level(data, "cms_slow")["context"] = "output of cms_mdi"
    g = run(data)
    d = only(g)
    assert d.code == "E-NAME"
    assert d.path == ("levels", SLOW, "context")
    assert d.message == "level 'cms_slow' learns from level 'cms_mdi', which does not exist"
    assert d.hint == "did you mean 'cms_mid'?"
    assert not [e for e in g.edges(data="kind") if e[2] == "context"]


def test_resolve_duplicate_level_name() -> None:
    data = cms()
    level(data, "cms_slow")["name"] = "cms_mid"
    d = only(run(data), "E-NAME")
    assert d.path == ("levels", SLOW, "name")  # the second definition, not the first
    assert entry(data, d.path) == "cms_mid"
    assert d.message == "level 'cms_mid' is defined twice"
    assert d.notes == (f"first defined as levels[{MID}]",)


def test_resolve_module_used_twice_in_the_block() -> None:
    data = transformer()
    data["model"]["block"] = ["attn", "mlp", "attn"]
    d = only(run(data))
    assert (d.code, d.path) == ("E-NAME", ("model", "block", 2))
    assert entry(data, d.path) == "attn"
    assert d.message == "module 'attn' appears twice in model.block"


def test_resolve_block_names_an_undefined_module() -> None:
    data = transformer()
    data["model"]["block"] = ["attn", "mpl"]
    found = diagnostics(run(data), "E-NAME")
    assert [(d.path, d.message, d.hint) for d in found] == [
        (("model", "block", 1), "model.block uses module 'mpl', which is not defined",
         "did you mean 'mlp'?"),
        (("modules", "mlp"), "module 'mlp' is defined but not used in model.block",
         "add it to model.block or remove it"),
    ]


def test_resolve_unused_module() -> None:
    data = transformer()
    data["modules"]["spare"] = {"type": "mlp"}
    d = only(run(data))
    assert (d.code, d.path) == ("E-NAME", ("modules", "spare"))
    assert d.message == "module 'spare' is defined but not used in model.block"


@pytest.mark.parametrize(("rate", "message"), [
    ("attn.eta", "module 'attn' produces no value 'eta' for the lr of level 'cms_fast'"),
    ("selfmod.eta", "level 'cms_fast' takes its lr from 'selfmod', which is not a module"),
])
def test_resolve_rate_that_names_a_module_value(rate: str, message: str) -> None:
    data = cms()
    level(data, "cms_fast")["rule"]["lr"] = rate
    d = only(run(data))
    assert (d.code, d.path) == ("E-NAME", ("levels", FAST, "rule", "lr"))
    assert entry(data, d.path) == rate
    assert d.message == message


# ----------------------------------------------------------------------------- ownership


def test_ownership_rest_takes_exactly_the_unowned_weights() -> None:
    g = run(cms())
    assert sorted(p.name for p in owned_by(g, "outer")) == ["attn", "embedding", "norms"]
    # The cache is a state: it goes to whoever names it, never to `rest`.
    assert owner_of(g, "attn.cache") == "attention"


def test_ownership_rest_takes_the_parts_of_model_variants() -> None:
    data = cms()
    data["model"]["tie_embeddings"] = False
    data["modules"]["cms"]["variant"] = "independent"
    level(data, "outer")["owns"] = ["embedding", "rest"]
    g = run(data)
    assert diagnostics(g) == []
    edges = sorted((v, d["item"]) for _, v, d in g.out_edges("level:outer", data=True)
                   if d["kind"] == "owns")
    assert edges == [("part:attn", 1), ("part:cms.mix", 1), ("part:embedding", 0),
                     ("part:norms", 1), ("part:unembedding", 1)]


def test_ownership_rest_leaves_an_unclaimed_state_unowned() -> None:
    data = transformer()
    data["levels"] = [level(data, "outer")]
    g = run(data)
    assert diagnostics(g) == []
    assert sorted(p.name for p in owned_by(g, "outer")) == ["attn", "embedding", "mlp", "norms"]
    assert owner_of(g, "attn.cache") is None


@pytest.fixture
def unverified(monkeypatch: pytest.MonkeyPatch) -> None:
    """Passes run without verify_ir between them, as they do for users by default."""
    monkeypatch.setenv("NESTGRAPH_DEBUG", "0")


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> None:
    """verify_ir after every pass (NESTGRAPH_DEBUG=1)."""
    monkeypatch.setenv("NESTGRAPH_DEBUG", "1")


def double_owner() -> dict:
    data = cms()
    level(data, "cms_slow")["owns"] = ["cms.slow", "cms.fast"]
    return data


@pytest.mark.usefixtures("unverified")
def test_ownership_double_owner_is_reported_at_the_second_owners_item() -> None:
    data = double_owner()
    g = run(data)
    d = only(g)
    assert (d.code, d.path) == ("E-OWN", ("levels", SLOW, "owns", 1))
    assert entry(data, d.path) == "cms.fast"
    assert d.message == "'cms.fast' is owned by level 'cms_fast' and again by level 'cms_slow'"
    # The second claim is dropped, so the graph keeps one owner per state.
    assert owner_of(g, "cms.fast") == "cms_fast"
    assert [p.name for p in owned_by(g, "cms_slow")] == ["cms.slow"]


@pytest.mark.usefixtures("unverified")
def test_ownership_double_owner_through_a_module_name() -> None:
    data = cms()
    level(data, "cms_slow")["owns"] = "cms"  # all three blocks, two of them owned already
    g = run(data)
    found = diagnostics(g, "E-OWN")
    assert [d.path for d in found] == [("levels", SLOW, "owns", 0)] * 2
    assert sorted(d.message.split("'")[1] for d in found) == ["cms.fast", "cms.mid"]


@pytest.mark.usefixtures("verified")
def test_ownership_double_owner_is_a_diagnostic_when_every_pass_is_verified() -> None:
    d = only(run(double_owner()))
    assert (d.code, d.path) == ("E-OWN", ("levels", SLOW, "owns", 1))


def test_ownership_two_levels_owning_rest() -> None:
    data = cms()
    level(data, "cms_slow")["owns"] = ["cms.slow", "rest"]
    g = run(data)
    d = only(g, "E-OWN")
    # Reported at the later one in the file; the earlier one takes the rest.
    assert d.path == ("levels", OUTER, "owns", 0)
    assert d.message == "level 'outer' owns 'rest', and so does level 'cms_slow'"
    assert owner_of(g, "embedding") == "cms_slow"


def test_ownership_unowned_chain_block_points_at_the_block() -> None:
    data = cms()
    data["levels"].remove(level(data, "cms_slow"))
    level(data, "outer")["owns"] = ["attn", "embedding", "norms"]
    d = only(run(data))
    assert d.code == "E-OWN"
    assert d.path == ("modules", "cms", "blocks", "slow")
    assert d.message == "the weights 'cms.slow' are owned by no level"
    assert d.hint == "add 'cms.slow' to a level's owns, or give the slowest level 'owns: rest'"


@pytest.mark.parametrize(("owns", "path"), [
    (["attn", "norms"], ("model",)),  # the embedding belongs to the model itself
    (["embedding", "norms"], ("modules", "attn")),
])
def test_ownership_unowned_weights_point_at_their_declaration(owns, path) -> None:
    data = cms()
    level(data, "outer")["owns"] = owns
    d = only(run(data))
    assert (d.code, d.path) == ("E-OWN", path)


def test_ownership_stays_quiet_about_weights_a_rejected_level_claimed() -> None:
    data = cms()
    del level(data, "cms_slow")["rule"]["lr"]  # the schema rejects the level...
    spec, index, gone = salvage(data)
    assert index == [ATTENTION, FAST, MID, OUTER]
    assert gone.levels == {"cms_slow"} and gone.owns == {"cms.slow"}
    g = validate_graph(spec, index, gone)
    # ...so its weights are neither reported unowned nor swept into `rest`.
    assert diagnostics(g) == []
    assert owner_of(g, "cms.slow") is None
    assert g.nodes["level:outer"]["level"].index == OUTER


# ------------------------------------------------------------------------------ classify


def test_classify_kinds_of_the_cms_levels() -> None:
    assert run(cms()).graph["kinds"] == {
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
    assert g.graph["kinds"]["cms_mid"] == "in_context"
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
    assert g.graph["kinds"]["outer"] == "step"  # the unit decides the kind
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
    assert g.graph["kinds"]["attention"] == "nonparametric"
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
    assert g.graph["tokens"] == {"attention": 1, "cms_fast": 16, "cms_mid": 256,
                                 "cms_slow": 4096, "outer": 256}
    # outer (1 step = 256 tokens) ties with cms_mid; cms_mid comes first in the file.
    assert g.graph["order"] == ["attention", "cms_fast", "cms_mid", "outer", "cms_slow"]


def test_order_tie_follows_the_document_when_it_changes() -> None:
    data = cms()
    outer = level(data, "outer")
    data["levels"].remove(outer)
    data["levels"].insert(1, outer)
    g = run(data)
    assert diagnostics(g) == []
    assert g.graph["order"] == ["attention", "cms_fast", "outer", "cms_mid", "cms_slow"]


def test_order_a_step_counts_seq_len_tokens() -> None:
    data = cms()
    data["train"]["seq_len"] = 8192
    g = run(data)
    assert diagnostics(g) == []
    assert g.graph["tokens"]["outer"] == 8192
    assert g.graph["order"] == ["attention", "cms_fast", "cms_mid", "cms_slow", "outer"]


def test_order_nest_edges_chain_the_levels() -> None:
    g = run(cms())
    nest = sorted((u, v) for u, v, k in g.edges(data="kind") if k == "nest")
    order = [f"level:{n}" for n in g.graph["order"]]
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
                         "the 256 tokens of the faster level 'cms_mid'")
    assert d.hint == "nested levels need periods that divide: try 4096 tokens"
    assert d.notes == ("a step reads train.seq_len = 256 tokens per sequence",)


def test_periods_one_bad_level_is_not_held_against_slower_ones() -> None:
    data = cms()
    level(data, "cms_mid")["every"] = "250 tokens"
    d = only(run(data))
    assert (d.code, d.path) == ("E-PERIOD", ("levels", MID, "every"))
    assert "of the 16 tokens of the faster level 'cms_fast'" in d.message
    assert d.hint.endswith("try 256 tokens")


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
    assert d.message == ("level 'cms_mid' would never update: its period 512 tokens is longer "
                         "than a sequence (256 tokens) and its state resets every sequence")
    assert g.graph["order"] == ["attention", "cms_fast", "outer", "cms_mid", "cms_slow"]


def test_periods_stream_level_may_outlast_a_sequence() -> None:
    data = cms()
    data["train"]["seq_len"] = 512  # cms_slow (4096 tokens, stream) spans eight sequences
    assert diagnostics(run(data)) == []


# --------------------------------------------------------------------------------- outer


def test_outer_sequence_level_without_a_step_level() -> None:
    data = cms()
    data["levels"].remove(level(data, "outer"))
    g = run(data)
    assert g.graph["init_owner"] is None
    found = [d for d in diagnostics(g, "E-LEVEL") if "resets every sequence" in d.message]
    assert len(found) == 1
    d = found[0]
    assert d.path == ("levels", FAST, "lifetime")  # the first sequence-lifetime level
    assert d.message == ("level 'cms_fast' resets every sequence, but no level updated every N "
                         "steps learns its initial state")


def test_outer_the_slowest_step_level_learns_the_initial_states() -> None:
    assert run(cms()).graph["init_owner"] == "outer"


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
    assert first.graph["diagnostics"] == second.graph["diagnostics"]
    assert bool(first.graph["diagnostics"]) is broken
    for key in ("order", "kinds", "tokens", "init_owner"):
        assert first.graph[key] == second.graph[key]
    assert sorted(first.edges(data="kind")) == sorted(second.edges(data="kind"))
