"""DGD (NL Eq. 88), chunk-parallel, against its per-token reference in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nestgraph.runtime.ops import memory
from nestgraph.runtime.ops.delta import delta_scan
from nestgraph.runtime.ops.delta_naive import delta_scan_reference
from nestgraph.runtime.ops.memory import init_weights, memory_read

F64 = torch.float64
CASES = [pytest.param(kind, objective, self_values, id=f"{kind}-{objective}-"
                      f"{'self' if self_values else 'given'}")
         for kind in memory.KINDS for objective in ("l2", "dot")
         for self_values in (False, True)]


def make_inputs(kind: str, seq_len: int, seed: int = 0, lead: tuple = (2, 3), dim: int = 4,
                hidden: int = 5, lr_max: float = 0.4, forget_max: float = 0.3) -> dict:
    g = torch.Generator().manual_seed(seed)
    weights = init_weights(kind, *lead, dim, hidden, generator=g, dtype=F64)
    if kind == "linear":  # a non-zero matrix, so that self-made values are not all zero
        weights["w"] = weights["w"] + torch.eye(dim, dtype=F64)

    def randn():
        return torch.randn(*lead, seq_len, dim, generator=g, dtype=F64)

    def rand(scale):
        return torch.rand(*lead, seq_len, generator=g, dtype=F64) * scale

    return {"weights": weights, "q": F.normalize(randn(), dim=-1),
            "k": F.normalize(randn(), dim=-1), "v": randn(), "lr": rand(lr_max),
            "forget": rand(forget_max)}


def run(fn, kind, objective, x, *, chunk, self_values):
    return fn(kind, objective, x["weights"], x["q"], x["k"], x["v"], x["lr"], x["forget"],
              chunk=chunk, self_values=self_values)


def with_gradients(fn, kind, objective, x, *, chunk, self_values):
    leaves = {}
    for key, value in list(x.items()):
        if isinstance(value, dict):
            x[key] = {n: t.clone().requires_grad_() for n, t in value.items()}
            leaves.update({f"weights.{n}": t for n, t in x[key].items()})
        else:
            x[key] = value.clone().requires_grad_()
            leaves[key] = x[key]
    y, state = run(fn, kind, objective, x, chunk=chunk, self_values=self_values)
    g = torch.Generator().manual_seed(1)
    outputs = [y, *state.values()]
    probe = sum((o * torch.randn(o.shape, generator=g, dtype=F64)).sum() for o in outputs)
    grads = torch.autograd.grad(probe, list(leaves.values()))
    return outputs, dict(zip(leaves, grads, strict=True))


def assert_matches_reference(kind, objective, self_values, seq_len, chunk, x=None):
    x = x or make_inputs(kind, seq_len)
    fast, fast_grads = with_gradients(delta_scan, kind, objective, dict(x), chunk=chunk,
                                      self_values=self_values)
    slow, slow_grads = with_gradients(delta_scan_reference, kind, objective, dict(x), chunk=chunk,
                                      self_values=self_values)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b)
    for name in fast_grads:
        torch.testing.assert_close(fast_grads[name], slow_grads[name],
                                   msg=lambda m, n=name: f"{n}: {m}")
        assert fast_grads[name].abs().sum() > 0, name


@pytest.mark.parametrize(("kind", "objective", "self_values"), CASES)
def test_chunk_one_matches_per_token_reference(kind, objective, self_values):
    assert_matches_reference(kind, objective, self_values, seq_len=7, chunk=1)


@pytest.mark.parametrize("chunk", [4, 5], ids=["chunk4", "chunk5_uneven_last"])
@pytest.mark.parametrize(("kind", "objective", "self_values"), CASES)
def test_chunked_matches_naive_chunked_loop(kind, objective, self_values, chunk):
    assert_matches_reference(kind, objective, self_values, seq_len=12, chunk=chunk)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_full_forgetting_and_zero_steps_stay_exact(kind):
    x = make_inputs(kind, 12)
    x["forget"][..., 1::4] = 1.0  # α = 0: the state is wiped before the write
    x["lr"][..., ::5] = 0.0
    assert_matches_reference(kind, "l2", False, seq_len=12, chunk=4, x=x)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_two_calls_carrying_state_equal_one(kind):
    x = make_inputs(kind, 12)
    y, state = run(delta_scan, kind, "l2", x, chunk=4, self_values=True)
    first = {k: (v if isinstance(v, dict) else v[..., :8, :] if v.dim() == 4 else v[..., :8])
             for k, v in x.items()}
    second = {k: (v[..., 8:, :] if v.dim() == 4 else v[..., 8:])
              for k, v in x.items() if not isinstance(v, dict)}
    y1, s1 = run(delta_scan, kind, "l2", first, chunk=4, self_values=True)
    y2, s2 = run(delta_scan, kind, "l2", {**second, "weights": s1}, chunk=4, self_values=True)
    torch.testing.assert_close(torch.cat([y1, y2], dim=-2), y)
    for name in state:
        torch.testing.assert_close(s2[name], state[name])


def test_decay_acts_along_the_key_only():
    # One token, dot objective with a zero value: the write is pure DGD decay, which scales the
    # key direction by (α − η) and every direction orthogonal to it by α.
    x = make_inputs("linear", 1, lead=(1, 1), dim=3)
    x["v"] = torch.zeros_like(x["v"])
    x["lr"].fill_(0.25)
    x["forget"].fill_(0.1)
    _, state = run(delta_scan, "linear", "dot", x, chunk=1, self_values=False)
    m0, m1 = x["weights"]["w"][0, 0], state["w"][0, 0]
    key = x["k"][0, 0, 0]
    other = torch.linalg.svd(key[None, :]).Vh[1]  # a unit vector orthogonal to the key
    torch.testing.assert_close(m1 @ key, (0.9 - 0.25) * (m0 @ key))
    torch.testing.assert_close(m1 @ other, 0.9 * (m0 @ other))


def test_recall_settles_at_two_thirds_of_the_value():
    # Written again and again with orthonormal keys, the linear memory's reading of a key
    # settles where DGD's decay and the L2 step balance: M k (1 − η − 2η) + 2η v = M k, so
    # M k = 2/3 v. The doubled kkᵀ of Eq. 93, taken literally, shrinks recall by a third
    # (docs/paper-compliance.md, ambiguity 3); this pins that behaviour down.
    g = torch.Generator().manual_seed(3)
    keys = torch.linalg.qr(torch.randn(8, 4, generator=g, dtype=F64)).Q.T[None, None]
    values = torch.randn(1, 1, 4, 8, generator=g, dtype=F64)
    weights = init_weights("linear", 1, 1, 8, generator=g, dtype=F64)
    k, v = keys.repeat(1, 1, 200, 1), values.repeat(1, 1, 200, 1)
    lr = torch.full(k.shape[:-1], 0.1, dtype=F64)
    _, state = delta_scan("linear", "l2", weights, k, k, v, lr, torch.zeros_like(lr), chunk=4)
    torch.testing.assert_close(memory_read("linear", state, keys), 2 / 3 * values)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_long_sequence_stays_finite(kind):
    x = make_inputs(kind, 2048, lr_max=1 / 16, forget_max=0.05)
    y, state = run(delta_scan, kind, "l2", x, chunk=16, self_values=True)
    assert torch.isfinite(y).all() and all(torch.isfinite(w).all() for w in state.values())
