"""The self-modifying Titans: chunk-parallel layer against its per-token reference (float64)."""

from __future__ import annotations

import copy

import pytest
import torch

from nestgraph.runtime.layers.selfmod import SelfModifyingTitans

F64 = torch.float64


def make_layer(kind="mlp", adaptive_q=False, self_values=True, chunk=8, proj_chunk=4,
               seed=0, **kwargs) -> SelfModifyingTitans:
    torch.manual_seed(seed)
    layer = SelfModifyingTitans(16, 2, kind=kind, hidden=8, adaptive_q=adaptive_q,
                                self_values=self_values, chunk=chunk, proj_chunk=proj_chunk,
                                max_lr=0.1, proj_max_lr=0.2, **kwargs).to(F64)
    with torch.no_grad():  # move the rate read-outs off their init, so the rates vary a lot
        layer.proj.readout.normal_(0, 1.0)
        layer.proj.readout_bias.copy_(torch.tensor([[0.0], [-2.0]]).expand(2, 2))
    return layer


def run_with_gradients(layer, x):
    y = layer(x)
    probe = (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(1),
                             dtype=F64)).sum()
    return y, torch.autograd.grad(probe, list(layer.parameters()))


CASES = [pytest.param(kind, adaptive_q, self_values,
                      id=f"{kind}-{'adaptive' if adaptive_q else 'static'}_q-"
                         f"{'self' if self_values else 'given'}")
         for kind in ("mlp", "linear") for adaptive_q in (False, True)
         for self_values in (True, False)]


@pytest.mark.parametrize(("chunk", "proj_chunk"), [(1, 1), (8, 4), (4, 8), (6, 4)],
                         ids=["per_token", "mem8_proj4", "mem4_proj8", "uneven"])
@pytest.mark.parametrize(("kind", "adaptive_q", "self_values"), CASES)
def test_layer_matches_per_token_reference(kind, adaptive_q, self_values, chunk, proj_chunk):
    fast = make_layer(kind, adaptive_q, self_values, chunk, proj_chunk)
    slow = copy.deepcopy(fast)
    slow.reference = True
    x = torch.randn(2, 16, 16, dtype=F64, generator=torch.Generator().manual_seed(2))
    y_fast, g_fast = run_with_gradients(fast, x)
    y_slow, g_slow = run_with_gradients(slow, x)
    torch.testing.assert_close(y_fast, y_slow)
    names = [n for n, _ in fast.named_parameters()]
    for name, a, b in zip(names, g_fast, g_slow, strict=True):
        torch.testing.assert_close(a, b, msg=lambda m, n=name: f"{n}: {m}")
    # Every initial state is meta-learned: the outer gradient reaches all of them.
    assert g_fast[names.index("memory.w1" if kind == "mlp" else "memory.w")].abs().sum() > 0
    assert g_fast[names.index("projections.w2" if kind == "mlp" else "projections.w")] \
        .abs().sum() > 0


def with_rules(layer, momentum: float, projections: str) -> SelfModifyingTitans:
    layer.main_rule, layer.momentum, layer.proj_rule = "titans", momentum, projections
    return layer


@pytest.mark.parametrize(("momentum", "projections"), [(0.0, "titans"), (0.9, "dgd")],
                         ids=["all_gd", "main_momentum"])
@pytest.mark.parametrize("kind", ["mlp", "plain3"])
def test_memories_by_the_titans_rule_match_their_reference_and_differ_from_dgd(
        kind, momentum, projections):
    # NL Table 6's ablations: the memories learn by GD (the main one with momentum too)
    # instead of DGD.
    fast = with_rules(make_layer(kind, chunk=4), momentum, projections)
    slow = copy.deepcopy(fast)
    slow.reference = True
    x = torch.randn(2, 16, 16, dtype=F64, generator=torch.Generator().manual_seed(2))
    y_fast, g_fast = run_with_gradients(fast, x)
    y_slow, g_slow = run_with_gradients(slow, x)
    torch.testing.assert_close(y_fast, y_slow)
    for a, b in zip(g_fast, g_slow, strict=True):
        torch.testing.assert_close(a, b)
    dgd = copy.deepcopy(fast)
    dgd.main_rule = dgd.proj_rule = "dgd"
    assert (dgd(x) - y_fast).abs().max() > 1e-8  # float64: any real difference shows
    # The momentum is carried across calls with the weights (the engine reads in chunks).
    cache: dict = {}
    pieces = [fast(x[:, i : i + 8], cache) for i in range(0, 16, 8)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), y_fast)


@pytest.mark.parametrize("static", ["k", "v"])
def test_a_non_adaptive_projection_is_never_written_and_matches_the_reference(static):
    # NL Table 6's "k (v) projection not adaptive": that memory keeps its initial state.
    fast = make_layer("mlp", chunk=4, **{f"adaptive_{static}": False})
    slow = copy.deepcopy(fast)
    slow.reference = True
    x = torch.randn(2, 12, 16, dtype=F64, generator=torch.Generator().manual_seed(5))
    y_fast, g_fast = run_with_gradients(fast, x)
    y_slow, g_slow = run_with_gradients(slow, x)
    torch.testing.assert_close(y_fast, y_slow)
    for a, b in zip(g_fast, g_slow, strict=True):
        torch.testing.assert_close(a, b)
    cache: dict = {}
    fast(x, cache)
    written, _, _, _ = cache[id(fast)]
    index = "kv".index(static)
    start = fast.projections.expand(2)
    for name, w in written.items():
        torch.testing.assert_close(w[index], start[name][index])  # never written
        assert (w[1 - index] - start[name][1 - index]).abs().max() > 0  # the other one is


@pytest.mark.parametrize("kind", ["plain2", "plain4"])
def test_plain_mlp_memories_match_the_per_token_reference(kind):
    fast = make_layer(kind, chunk=4, proj_chunk=2)
    slow = copy.deepcopy(fast)
    slow.reference = True
    x = torch.randn(2, 12, 16, dtype=F64, generator=torch.Generator().manual_seed(4))
    y_fast, g_fast = run_with_gradients(fast, x)
    y_slow, g_slow = run_with_gradients(slow, x)
    torch.testing.assert_close(y_fast, y_slow)
    for a, b in zip(g_fast, g_slow, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_calls_carrying_state_equal_one_call(kind):
    layer = make_layer(kind)
    x = torch.randn(2, 24, 16, dtype=F64, generator=torch.Generator().manual_seed(3))
    whole = layer(x)
    cache: dict = {}
    pieces = [layer(x[:, i : i + 8], cache) for i in range(0, 24, 8)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole)


def test_memories_change_only_at_their_chunk_boundaries():
    # With the main memory written every 8 tokens, a token's output cannot depend on a later
    # token, and tokens 0..7 see only the initial memory: changing token 5 changes nothing
    # before it.
    layer = make_layer(chunk=8, proj_chunk=4)
    x = torch.randn(1, 16, 16, dtype=F64, generator=torch.Generator().manual_seed(4))
    y = layer(x)
    x2 = x.clone()
    x2[:, 5] += 1.0
    y2 = layer(x2)
    torch.testing.assert_close(y2[:, :5], y[:, :5])
    assert (y2[:, 5:] - y[:, 5:]).abs().amax() > 1e-6


def test_constant_rates_are_used_as_given():
    layer = make_layer(lr=0.0, proj_lr=0.0)
    # Nothing is ever written: the output is the same as reading the initial states only,
    # so shuffling earlier chunks leaves the last chunk's output unchanged.
    x = torch.randn(1, 16, 16, dtype=F64, generator=torch.Generator().manual_seed(5))
    y = layer(x)
    x2 = x.clone()
    x2[:, :8] = x2[:, :8].flip(1)
    torch.testing.assert_close(layer(x2)[:, 11:], y[:, 11:])


def test_hope_depth_four_trains_200_steps_without_a_non_finite_value(tmp_path):
    """Four stacked self-modifying Titans + CMS blocks, 200 outer steps, every loss finite
    (about 35 s on 2 cores)."""
    from nestgraph.testing import train_records

    records = train_records(tmp_path, "hope", [
        "model.layers=4", "model.dim=16", "modules.selfmod.heads=2", "train.batch=2",
        "train.seq_len=32", "levels.memory.every=16 tokens", "levels.cms_fast.every=16 tokens",
        "levels.cms_mid.every=16 tokens", "levels.cms_slow.every=128 tokens",
        "train.eval_every=100", "train.eval_batches=1", "data.max_bytes=200000"], steps=200)
    values = [r[k] for r in records for k in ("loss", "heldout_bpb") if k in r]
    assert len(values) > 20 and all(v == v and abs(v) < 1e6 for v in values)
    evals = [r["heldout_bpb"] for r in records if "heldout_bpb" in r]
    assert evals[-1] < evals[0]
