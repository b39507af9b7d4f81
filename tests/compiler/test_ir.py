"""The IR: which nodes and edges a spec becomes, and the invariants `verify_ir` guards."""

from __future__ import annotations

import copy
import functools

import networkx as nx
import pytest

from nestgraph.compiler import validate_graph
from nestgraph.compiler.ir import IRError, build_ir, facts, owned_by, owner_of, verify_ir
from nestgraph.spec import read_document
from nestgraph.spec.schema import Spec


@functools.cache
def _shipped(name: str) -> dict:
    data, _ = read_document(name)
    return data


def spec_of(name: str) -> Spec:
    return Spec.model_validate(copy.deepcopy(_shipped(name)))


TRANSFORMER_NODES = {
    "level:attention", "level:outer",
    "module:attn", "module:mlp",
    "part:attn", "part:attn.cache", "part:mlp", "part:embedding", "part:norms",
}

CMS_NODES = {
    "level:attention", "level:cms_fast", "level:cms_mid", "level:cms_slow", "level:outer",
    "module:attn", "module:cms",
    "part:attn", "part:attn.cache", "part:cms.fast", "part:cms.mid", "part:cms.slow",
    "part:embedding", "part:norms",
}

CMS_HAS = [
    ("module:attn", "part:attn", "has"),
    ("module:attn", "part:attn.cache", "has"),
    ("module:cms", "part:cms.fast", "has"),
    ("module:cms", "part:cms.mid", "has"),
    ("module:cms", "part:cms.slow", "has"),
]


# ------------------------------------------------------------------------------ build_ir


def test_build_ir_of_a_two_level_spec() -> None:
    g = build_ir(spec_of("transformer"))
    assert set(g.nodes) == TRANSFORMER_NODES
    # Before any pass only the modules' `has` edges exist: owning is the passes' business.
    assert sorted(g.edges(data="kind")) == [
        ("module:attn", "part:attn", "has"),
        ("module:attn", "part:attn.cache", "has"),
        ("module:mlp", "part:mlp", "has"),
    ]
    assert facts(g).diagnostics == []
    assert g.graph["name"] == "transformer"
    verify_ir(g)


def test_build_ir_of_the_cms_spec() -> None:
    g = build_ir(spec_of("cms"))
    assert set(g.nodes) == CMS_NODES
    assert sorted(g.edges(data="kind")) == CMS_HAS
    fast = g.nodes["level:cms_fast"]["level"]
    assert (fast.index, fast.period, fast.unit, fast.lifetime) == (1, 16, "token", "sequence")
    assert (fast.context, fast.source, fast.owns) == ("tokens", "", ("cms.fast",))
    outer = g.nodes["level:outer"]["level"]
    assert (outer.period, outer.unit, outer.context, outer.owns) == (1, "step", "corpus", ("rest",))
    chain = g.nodes["part:cms.slow"]["part"]
    assert chain.paths == ("layers.0.blocks.cms.body.blocks.slow",
                           "layers.1.blocks.cms.body.blocks.slow")
    assert (chain.kind, chain.fast, chain.module) == ("param", True, "cms")
    cache = g.nodes["part:attn.cache"]["part"]
    assert (cache.kind, cache.fast) == ("state", False)
    verify_ir(g)


def test_build_ir_variants_add_exactly_their_parts() -> None:
    data = copy.deepcopy(_shipped("cms"))
    data["model"]["tie_embeddings"] = False
    data["modules"]["cms"]["variant"] = "independent"
    g = build_ir(Spec.model_validate(data))
    assert set(g.nodes) == CMS_NODES | {"part:unembedding", "part:cms.mix"}
    assert sorted(g.edges(data="kind")) == sorted([*CMS_HAS, ("module:cms", "part:cms.mix", "has")])
    assert g.nodes["part:cms.mix"]["part"].fast is False


def test_build_ir_keeps_document_positions_of_levels() -> None:
    # After salvage dropped levels, each level keeps its position in the file for diagnostics.
    g = build_ir(spec_of("transformer"), [0, 3])
    assert g.nodes["level:attention"]["level"].index == 0
    assert g.nodes["level:outer"]["level"].index == 3


def test_validated_cms_graph_edges() -> None:
    g = validate_graph(spec_of("cms"))
    assert facts(g).diagnostics == []
    assert set(g.nodes) == CMS_NODES
    assert sorted(g.edges(data="kind")) == sorted([
        *CMS_HAS,
        ("level:attention", "part:attn.cache", "owns"),
        ("level:cms_fast", "part:cms.fast", "owns"),
        ("level:cms_mid", "part:cms.mid", "owns"),
        ("level:cms_slow", "part:cms.slow", "owns"),
        ("level:outer", "part:attn", "owns"),
        ("level:outer", "part:embedding", "owns"),
        ("level:outer", "part:norms", "owns"),
        ("level:attention", "level:cms_fast", "nest"),
        ("level:cms_fast", "level:cms_mid", "nest"),
        ("level:cms_mid", "level:outer", "nest"),
        ("level:outer", "level:cms_slow", "nest"),
    ])
    assert owner_of(g, "norms") == "outer"
    assert owner_of(g, "attn.cache") == "attention"
    assert [p.name for p in owned_by(g, "cms_mid")] == ["cms.mid"]
    verify_ir(g)


def test_context_edges_point_from_source_to_consumer() -> None:
    data = copy.deepcopy(_shipped("cms"))
    data["levels"][3]["context"] = "output of attention"  # cms_slow reads attention's output
    g = validate_graph(Spec.model_validate(data))
    context = sorted((u, v) for u, v, k in g.edges(data="kind") if k == "context")
    assert context == [("level:attention", "level:cms_slow")]


def test_order_pass_keeps_a_context_edge_between_adjacent_levels() -> None:
    data = copy.deepcopy(_shipped("cms"))
    data["levels"][2]["context"] = "output of cms_fast"  # cms_mid learns from the next faster
    g = validate_graph(Spec.model_validate(data))
    kinds = {k for u, v, k in g.edges(data="kind") if (u, v) == ("level:cms_fast", "level:cms_mid")}
    assert kinds == {"context", "nest"}


# ------------------------------------------------------------------------------ verify_ir


def link(g: nx.DiGraph, u: str, v: str, kind: str | None) -> None:
    """Add an edge the way the passes do (keyed by kind if the IR is a multigraph)."""
    if kind is None:
        g.add_edge(u, v)
    elif g.is_multigraph():
        g.add_edge(u, v, key=kind, kind=kind)
    else:
        g.add_edge(u, v, kind=kind)


@pytest.fixture
def valid() -> nx.DiGraph:
    g = build_ir(spec_of("transformer"))
    verify_ir(g)
    return g


def test_verify_rejects_a_node_without_its_record(valid: nx.DiGraph) -> None:
    valid.add_node("level:ghost")
    with pytest.raises(IRError, match="'level:ghost' has no 'level' record"):
        verify_ir(valid)


def test_verify_rejects_a_node_carrying_another_kinds_record(valid: nx.DiGraph) -> None:
    valid.add_node("part:ghost", module=valid.nodes["module:mlp"]["module"])
    with pytest.raises(IRError, match="'part:ghost' has no 'part' record"):
        verify_ir(valid)


def test_verify_rejects_a_node_of_unknown_kind(valid: nx.DiGraph) -> None:
    valid.add_node("thing:x", thing=object())
    with pytest.raises(IRError, match="'thing:x' has no 'thing' record"):
        verify_ir(valid)


@pytest.mark.parametrize(("u", "v", "kind"), [
    ("module:attn", "part:mlp", "owns"),  # owns must start at a level
    ("level:outer", "part:mlp", "context"),  # context joins two levels
    ("part:mlp", "module:mlp", "has"),  # has runs module -> part
    ("level:outer", "level:attention", "bogus"),
    ("level:outer", "level:attention", None),
])
def test_verify_rejects_an_edge_of_a_wrong_kind(valid: nx.DiGraph, u, v, kind) -> None:
    link(valid, u, v, kind)
    with pytest.raises(IRError, match="has a wrong kind"):
        verify_ir(valid)


def test_verify_rejects_a_weight_owned_twice_without_a_diagnostic(valid: nx.DiGraph) -> None:
    link(valid, "level:attention", "part:mlp", "owns")
    link(valid, "level:outer", "part:mlp", "owns")
    with pytest.raises(IRError, match="owned twice"):
        verify_ir(valid)


def _add_levels(g: nx.DiGraph, *names: str) -> None:
    record = g.nodes["level:outer"]["level"]
    for name in names:
        g.add_node(f"level:{name}", level=record)


def test_verify_accepts_a_nest_chain(valid: nx.DiGraph) -> None:
    _add_levels(valid, "c")
    link(valid, "level:attention", "level:outer", "nest")
    link(valid, "level:outer", "level:c", "nest")
    verify_ir(valid)


def test_verify_rejects_nest_edges_that_close_a_loop(valid: nx.DiGraph) -> None:
    _add_levels(valid, "c")
    for u, v in [("attention", "outer"), ("outer", "c"), ("c", "attention")]:
        link(valid, f"level:{u}", f"level:{v}", "nest")
    with pytest.raises(IRError, match="do not form a forest"):
        verify_ir(valid)


def test_verify_rejects_nest_edges_forming_a_diamond(valid: nx.DiGraph) -> None:
    _add_levels(valid, "c", "d")
    for u, v in [("attention", "c"), ("attention", "d"), ("c", "outer"), ("d", "outer")]:
        link(valid, f"level:{u}", f"level:{v}", "nest")
    with pytest.raises(IRError, match="do not form a forest"):
        verify_ir(valid)


def test_verify_rejects_a_two_level_nest_cycle(valid: nx.DiGraph) -> None:
    link(valid, "level:attention", "level:outer", "nest")
    link(valid, "level:outer", "level:attention", "nest")
    with pytest.raises(IRError):
        verify_ir(valid)
