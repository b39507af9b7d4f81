"""Optimizers written as levels: what the passes accept and refuse, the state compile reports,
the optimizer a program builds from them, and training with them (Transformer and Hope)."""

from __future__ import annotations

import pytest
import torch

from nestgraph.optim.composed import ComposedMemories
from nestgraph.runtime.levels import make_optimizer, owned_parameters
from nestgraph.runtime.program import load_program
from nestgraph.runtime.train.loop import Interrupted, train
from nestgraph.runtime.train.progress import SilentReporter
from nestgraph.testing import (
    compile_build,
    compiled_plan,
    level_of,
    shipped_data,
    spec_errors,
)

FAST = ["train.batch=2", "train.seq_len=32", "train.eval_batches=1", "train.eval_every=0",
        "data.max_bytes=100000"]


def _messages(data) -> list[str]:
    return [d.message for d in spec_errors(data)]


def test_an_optimizer_level_owns_no_weights() -> None:
    data = shipped_data("optimizers/m3")
    level_of(data, "slow_momentum")["owns"] = "attn"
    assert any("an optimizer level owns no weights" in m for m in _messages(data))


def test_memories_of_a_level_with_its_own_rule_are_refused() -> None:
    data = shipped_data("optimizers/momentum")
    level_of(data, "outer")["rule"] = {"type": "adamw", "lr": 0.001}
    assert any("is updated by its own rule (adamw), so nothing reads this memory" in m
               for m in _messages(data))


def test_a_memories_rule_needs_a_reader() -> None:
    data = shipped_data("optimizers/momentum")
    data["levels"] = [lv for lv in data["levels"] if lv["name"] != "momentum"]
    assert any("no level reads them" in m for m in _messages(data))


def test_an_optimizer_period_is_a_multiple_of_what_it_reads() -> None:
    data = shipped_data("optimizers/m3")
    level_of(data, "outer")["every"] = "2 steps"
    level_of(data, "slow_momentum")["every"] = "3 steps"
    assert any("every 3 steps is not a multiple of the 2 steps" in m for m in _messages(data))


def test_each_optimizer_rule_has_its_objectives() -> None:
    data = shipped_data("optimizers/adam")
    level_of(data, "second_moment")["objective"] = "l2"
    assert any("a second_moment memory minimises dot" in m for m in _messages(data))


def test_compile_reports_each_levels_optimizer_state() -> None:
    plan, _ = compiled_plan("optimizers/m3")
    state = {lv["name"]: lv["optimizer_state"] for lv in plan["levels"]}
    trained = next(lv for lv in plan["levels"] if lv["name"] == "outer")["params"]
    # fast: memory + read-out; second: the squares; slow: memory + read-out + 8-step chunk
    assert state == {"attention": 0, "outer": 0, "fast_momentum": 2 * trained,
                     "second_moment": trained, "slow_momentum": 3 * trained}
    adamw, _ = compiled_plan("transformer")
    outer = next(lv for lv in adamw["levels"] if lv["name"] == "outer")
    assert outer["optimizer_state"] == 2 * outer["params"]


def test_the_program_builds_the_optimizer_its_levels_describe(tmp_path) -> None:
    program = load_program(compile_build(tmp_path / "b", "optimizers/m3", FAST))
    model = program.build_model()
    outer = next(lv for lv in program.schedule if lv.name == "outer")
    opt = make_optimizer(outer, owned_parameters(model, outer), program.schedule)
    assert isinstance(opt, ComposedMemories)
    memories = {m.name: m for m in opt.memories}
    assert set(memories) == {"fast_momentum", "second_moment", "slow_momentum"}
    assert memories["slow_momentum"].every == 8 and memories["slow_momentum"].weight == 0.1
    assert memories["fast_momentum"].output == "newton_schulz"
    assert memories["second_moment"].kind == "second_moment"


def _hope_with(optimizer: str) -> dict:
    """Hope's levels, with the outer level's optimizer replaced by an optimizer spec's levels."""
    hope, opt = shipped_data("hope"), shipped_data(f"optimizers/{optimizer}")
    level_of(hope, "outer")["rule"] = level_of(opt, "outer")["rule"]
    hope["levels"] += [lv for lv in opt["levels"] if lv["context"].startswith("gradients")]
    for lv in hope["levels"]:
        if lv["name"] == "slow_momentum":
            lv["every"] = "16 steps"  # nests with Hope's cms_slow (4096 tokens = 16 steps)
    return hope


@pytest.mark.parametrize("optimizer", ["momentum", "delta-momentum", "adam", "muon", "m3",
                                       "dmgd"])
def test_every_optimizer_trains_hope(optimizer: str, tmp_path) -> None:
    import yaml

    spec = tmp_path / f"hope-{optimizer}.yaml"
    spec.write_text(yaml.safe_dump(_hope_with(optimizer), sort_keys=False))
    overrides = [*FAST, "train.seq_len=64", "model.layers=1", "levels.cms_mid.every=32 tokens",
                 "levels.cms_slow.every=128 tokens"]
    if optimizer == "m3":
        overrides.append("levels.slow_momentum.every=2 steps")
    program = load_program(compile_build(tmp_path / "b", str(spec), overrides))
    result = train(program, dict(program.train, steps=3), program.data, out=tmp_path / "runs",
                   reporter=SilentReporter())
    assert result.step == 3 and torch.isfinite(torch.tensor(result.heldout_bpb))


def test_an_optimizer_written_as_levels_resumes_bitwise(tmp_path) -> None:
    from nestgraph.runtime.train import checkpoint as ckpt

    program = load_program(compile_build(tmp_path / "b", "optimizers/m3",
                                         [*FAST, "levels.slow_momentum.every=2 steps"]))

    def run(out, **kw):
        return train(program, dict(program.train, steps=6), program.data, out=out,
                     reporter=SilentReporter(), **kw)

    whole = run(tmp_path / "a")
    with pytest.raises(Interrupted):
        run(tmp_path / "c", interrupt_at=3)
    resumed = run(tmp_path / "c", resume="auto")
    assert resumed.resumed_from == 3
    w1, _, _ = ckpt.load_checkpoint(ckpt.latest_checkpoint(whole.run_dir))
    w2, _, _ = ckpt.load_checkpoint(ckpt.latest_checkpoint(resumed.run_dir))
    for name in w1:
        assert torch.equal(w1[name], w2[name]), name
