"""The name passes (resolve, ownership): this graph in, that attribute or diagnostic out.

Every spec here is the shipped cms spec (or the transformer) with one thing changed, so each
test shows exactly which entry a pass reacts to, and checks that the diagnostic's path points
at that entry of the document.
"""

from __future__ import annotations

import pytest

from nestgraph.compiler import validate_graph
from nestgraph.compiler.ir import owned_by, owner_of
from nestgraph.compiler.salvage import salvage
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
    ]  # 'mlp' is not also reported unused: that follows from the typo


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
