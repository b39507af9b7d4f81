"""What the drawings say: one cluster per level nested slowest outermost, the schedule's marks,
folding of repeated layers, and each edge kind where the levels imply it."""

from __future__ import annotations

import copy
import json
import re

import pytest

from nestgraph.spec import shipped_specs
from nestgraph.testing import compiled_plan
from nestgraph.viz.levels import levels_diagram
from nestgraph.viz.modules import modules_diagram
from nestgraph.viz.schedule import schedule
from nestgraph.viz.views import text

SPECS = sorted(shipped_specs())


@pytest.mark.parametrize("name", SPECS)
def test_levels_view_has_one_cluster_per_level_nested_slowest_outermost(name: str) -> None:
    plan, spec = compiled_plan(name)
    dot = text(plan, spec, "levels", "dot")
    clusters = re.findall(r'subgraph "cluster_level_(\w+)"', dot)
    order = [lv["name"] for lv in plan["levels"]]
    assert clusters == order[::-1]  # written outermost first: the slowest level
    for lv in plan["levels"]:
        assert lv["name"] in dot and f"every {lv['every']}" in dot
    # each cluster holds the next faster one
    diagram = levels_diagram(plan, spec)
    cluster = diagram.clusters[0]
    for expected in order[::-1]:
        assert cluster.id == f"cluster_level_{expected}"
        cluster = cluster.clusters[0] if cluster.clusters else None
    assert cluster is None


def test_every_owned_part_has_an_updates_edge_from_its_level() -> None:
    plan, spec = compiled_plan("hope")
    diagram = levels_diagram(plan, spec)
    updates = {(e.source, e.target) for e in diagram.edges if e.kind == "updates"}
    for lv in plan["levels"]:
        for part in lv["owns"]:
            assert (f"level:{lv['name']}", f"part:{part}") in updates
    ids = diagram.node_ids()
    assert all(e.source in ids and e.target in ids for e in diagram.edges)


def test_edge_kinds_follow_the_levels() -> None:
    plan, spec = compiled_plan("hope")
    edges = levels_diagram(plan, spec).edges
    teach = {e.target for e in edges if e.kind == "teach" and e.source == "loss"}
    assert teach == {f"level:{lv.name}" for lv in spec.levels if lv.objective.type == "next_token"}
    self_made = {e.source for e in edges if e.kind == "values" and e.source == e.target}
    assert self_made == {"part:selfmod.memory", "part:selfmod.projections"}  # values: self
    assert any(e.kind == "values" and e.label == "k, v, η, α" for e in edges)
    assert any(e.kind == "data" and e.target == "loss" for e in edges)


def test_context_flows_between_levels_are_drawn() -> None:
    # The compiler runs only token and corpus flows so far; the drawing reads the plan's.
    plan, spec = copy.deepcopy(compiled_plan("cms"))
    next(lv for lv in plan["levels"] if lv["name"] == "cms_slow")["context"] = "output of cms_mid"
    edges = levels_diagram(plan, spec).edges
    assert any(e.kind == "context" and e.source == "level:cms_mid"
               and e.target == "level:cms_slow" and e.label == "output" for e in edges)


def test_repeated_layers_fold_and_depth_unfolds() -> None:
    plan2, spec2 = compiled_plan("hope")
    plan12, spec12 = compiled_plan("hope", ("model.layers=12",))
    folded2, folded12 = levels_diagram(plan2, spec2), levels_diagram(plan12, spec12)
    assert len(folded12.node_ids()) == len(folded2.node_ids())  # 12 layers read like 2
    assert "× 12 layers" in text(plan12, spec12, "levels", "dot")
    unfolded = levels_diagram(plan12, spec12, depth=2).node_ids()
    assert {f"part:cms.fast@{i}" for i in range(12)} <= unfolded
    levels_only = levels_diagram(plan2, spec2, depth=0).node_ids()
    assert not any(n.startswith("part:") for n in levels_only)
    modules12 = modules_diagram(plan12, spec12)
    assert [c.text for c in modules12.clusters] == ["layer × 12"]
    assert len(modules_diagram(plan12, spec12, depth=2).clusters) == 12


@pytest.mark.parametrize("name", SPECS)
def test_schedule_marks_each_level_as_often_as_its_period_implies(name: str) -> None:
    plan, spec = compiled_plan(name)
    s = schedule(plan)
    tokens = {lv["name"]: lv["tokens"] for lv in plan["levels"]}
    step_panel, hyper_panel = s.panels
    for row in step_panel.rows:
        assert len(row.fires) == s.seq_len // tokens[row.level]
    for row in hyper_panel.rows:
        assert len(row.fires) == s.hyperperiod_tokens // tokens[row.level]
    assert {r.level for p in s.panels for r in p.rows} == set(tokens)
    # the DOT table carries exactly those marks, row by row
    dot = text(plan, spec, "schedule", "dot")
    for panel in s.panels:
        for row in panel.rows:
            found = re.search(rf"<b>{row.level}</b></td><td[^>]*>[^<]*</td>(.*?)</tr>", dot)
            assert found and found.group(1).count("bgcolor") == len(row.fires)
            dot = dot[found.end():]


def test_hope_schedule_in_numbers() -> None:
    s = schedule(compiled_plan("hope")[0])
    assert s.hyperperiod_tokens == 4096
    counts = {(p.title.split(":")[0], r.level): len(r.fires) for p in s.panels for r in p.rows}
    assert counts[("one step", "projections")] == 32  # every 8 of 256 tokens
    assert counts[("one hyperperiod", "cms_slow")] == 1
    assert counts[("one hyperperiod", "outer")] == 16


@pytest.mark.parametrize("view", ["levels", "schedule", "modules"])
def test_json_and_mermaid_forms(view: str) -> None:
    plan, spec = compiled_plan("hope")
    data = json.loads(text(plan, spec, view, "json"))
    assert data["view"] == view
    mermaid = text(plan, spec, view, "mermaid")
    assert mermaid.startswith("gantt" if view == "schedule" else "flowchart TB")
    if view == "levels":
        assert mermaid.count("subgraph cluster_level_") == len(plan["levels"])
