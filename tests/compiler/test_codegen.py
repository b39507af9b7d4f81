"""The plan and program.py: deterministic, compilable, and saying what the schedule says."""

from __future__ import annotations

import copy
import functools
import hashlib
import json

import pytest

import nestgraph.cli
from nestgraph.compiler import STAGE_NAMES, STAGES, Compilation, compile_spec
from nestgraph.compiler.ir import facts
from nestgraph.compiler.plan import PLAN_VERSION
from nestgraph.spec import dump_resolved, read_document

CMS_ORDER = ["attention", "cms_fast", "cms_mid", "outer", "cms_slow"]
FAST_PATHS = ["layers.0.blocks.cms.body.blocks.fast", "layers.1.blocks.cms.body.blocks.fast"]
MID_PATHS = ["layers.0.blocks.cms.body.blocks.mid", "layers.1.blocks.cms.body.blocks.mid"]
SLOW_PATHS = ["layers.0.blocks.cms.body.blocks.slow", "layers.1.blocks.cms.body.blocks.slow"]


@functools.cache
def _document(name: str):
    return read_document(name)


def compiled(name: str = "cms", stop_after: str = "program") -> Compilation:
    data, source = _document(name)
    return compile_spec(copy.deepcopy(data), source, stop_after=stop_after)


@functools.cache
def cms() -> Compilation:
    return compiled("cms")


def by_name(plan: dict) -> dict[str, dict]:
    return {lv["name"]: lv for lv in plan["levels"]}


def test_compiling_twice_gives_the_same_bytes() -> None:
    first, second = cms(), compiled("cms")
    assert first.program == second.program
    assert json.dumps(first.plan, indent=2) == json.dumps(second.plan, indent=2)
    assert first.resolved_yaml == second.resolved_yaml
    assert first.passes_run == second.passes_run == list(STAGE_NAMES)


@pytest.mark.parametrize("name", ["cms", "transformer"])
def test_the_program_compiles(name: str) -> None:
    program = cms().program if name == "cms" else compiled(name).program
    compile(program, f"{name}/program.py", "exec")


def test_the_plan_orders_the_cms_levels_fastest_first() -> None:
    plan = cms().plan
    assert [lv["name"] for lv in plan["levels"]] == CMS_ORDER
    assert [lv["tokens"] for lv in plan["levels"]] == [1, 16, 128, 256, 4096]
    assert [lv["kind"] for lv in plan["levels"]] == [
        "nonparametric", "in_context", "in_context", "step", "in_context"]
    assert plan["chunk"] == 16  # gcd of the in-context periods


def test_outer_learns_the_initial_states_of_every_in_context_level() -> None:
    levels = by_name(cms().plan)
    outer = levels["outer"]
    assert outer["owns"] == ["attn", "embedding", "norms"]
    # cms_slow lives for the stream: its weight is W0 + what the stream learned, W0 is outer's.
    assert outer["initial_states"] == ["cms.fast", "cms.mid", "cms.slow"]
    for path in FAST_PATHS + MID_PATHS + SLOW_PATHS:
        assert path in outer["modules"]
    assert levels["cms_slow"]["modules"] == SLOW_PATHS
    assert levels["cms_fast"]["modules"] == FAST_PATHS
    assert levels["attention"]["modules"] == []  # a cache holds no weights
    assert all(lv["initial_states"] == [] for name, lv in levels.items() if name != "outer")


def test_the_plan_counts_every_weight_once() -> None:
    plan = cms().plan
    params = {p["name"]: p["params"] for p in plan["parts"]}
    assert params["attn.cache"] == 0
    assert plan["totals"]["params"] == sum(params.values())
    levels = by_name(plan)
    owned = sum(lv["params"] for lv in levels.values())
    assert owned == plan["totals"]["params"]
    assert levels["outer"]["initial_state_params"] == \
        params["cms.fast"] + params["cms.mid"] + params["cms.slow"]


def test_the_plan_records_the_spec_it_came_from() -> None:
    result = cms()
    plan = result.plan
    assert plan["plan_version"] == PLAN_VERSION
    assert plan["name"] == "cms"
    assert plan["sha256"] == hashlib.sha256(result.resolved_yaml.encode()).hexdigest()
    assert result.resolved_yaml == dump_resolved(result.spec)
    assert f"SPEC_SHA256 = {plan['sha256']!r}\n" in result.program
    assert "SPEC_NAME = 'cms'\n" in result.program
    assert plan["train"]["seq_len"] == 256 and plan["data"]["source"] == "stdlib"


def test_the_program_schedule_is_the_plans() -> None:
    result = cms()
    namespace: dict = {"__name__": "nestgraph_test_program"}
    exec(compile(result.program, "program.py", "exec"), namespace)  # noqa: S102
    schedule = namespace["SCHEDULE"]
    assert [lv.name for lv in schedule] == CMS_ORDER
    for defined, planned in zip(schedule, result.plan["levels"], strict=True):
        assert list(defined.modules) == planned["modules"]
        assert (defined.kind, defined.period, defined.unit, defined.lifetime, defined.meta) == (
            planned["kind"], planned["period"], planned["unit"], planned["lifetime"],
            planned["meta"])
    assert namespace["TRAIN"] == result.plan["train"]
    assert namespace["DATA"] == result.plan["data"]


def test_the_cli_offers_the_compilers_stages() -> None:
    assert nestgraph.cli.common.STAGES == STAGE_NAMES
    assert STAGE_NAMES[0] == "spec" and STAGE_NAMES[-1] == "program"
    assert len(set(STAGE_NAMES)) == len(STAGES)


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_every_stage_is_a_place_to_stop(stage: str) -> None:
    result = compiled("cms", stop_after=stage)
    assert result.stopped_at == stage
    assert result.spec.name == "cms"
    done = STAGE_NAMES[:STAGE_NAMES.index(stage) + 1]
    assert tuple(result.passes_run) == done
    assert (result.graph is None) == (stage == "spec")
    assert (result.plan is None) == ("plan" not in done)
    assert (result.program is None) == ("program" not in done)
    if stage == "ir":  # the graph as built, before any pass
        assert {k for _, _, k in result.graph.edges(data="kind")} == {"has"}
        assert facts(result.graph).order is None
    if "order" in done:
        assert facts(result.graph).order == CMS_ORDER
    if stage == "program":
        assert result.program == cms().program
