"""Defence in depth: a non-finite number that got past the schema never reaches program.py as
a bare `inf` or `nan` (an undefined name there); code generation stops with a compile error."""

from __future__ import annotations

import copy
import functools

import pytest

from nestgraph.compiler import compile_spec
from nestgraph.compiler.codegen import emit_program, literal, model_source
from nestgraph.errors import CompileError
from nestgraph.spec.schema import Spec
from nestgraph.testing import shipped_data


@functools.cache
def _compiled():
    return compile_spec(shipped_data("transformer"), stop_after="plan")


def plan_and_spec() -> tuple[dict, Spec]:
    out = _compiled()
    return copy.deepcopy(out.plan), out.spec


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_train_setting_is_a_compile_error(value: float) -> None:
    plan, spec = plan_and_spec()
    plan["train"]["steps"] = value
    with pytest.raises(CompileError, match=r"train\.steps is .*program\.py"):
        emit_program(plan, spec)


def test_a_non_finite_rate_is_a_compile_error_naming_the_level() -> None:
    plan, spec = plan_and_spec()
    plan["levels"][-1]["rule"]["betas"] = [0.9, float("nan")]
    with pytest.raises(CompileError, match=r"levels\.outer\.rule\.betas\[1\]"):
        emit_program(plan, spec)


def test_a_non_finite_module_setting_is_a_compile_error() -> None:
    _, spec = plan_and_spec()
    attn = spec.modules["attn"].model_copy(update={"rope_base": float("inf")})
    broken = spec.model_copy(update={"modules": {**spec.modules, "attn": attn}})
    with pytest.raises(CompileError, match=r"modules\.attn\.rope_base"):
        model_source(broken)


def test_finite_values_are_written_as_before() -> None:
    plan, spec = plan_and_spec()
    program = emit_program(plan, spec)
    compile(program, "program.py", "exec")
    assert literal(1e-3, "x") == "0.001" and literal([0.9, 0.95], "x") == "[0.9, 0.95]"
