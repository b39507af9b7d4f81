"""The chunk-parallel associative memory against its per-token reference, in float64."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from nestgraph.runtime.ops import memory
from nestgraph.runtime.ops.memory import chunk_coefficients, init_weights, memory_read, memory_scan
from nestgraph.runtime.ops.memory_naive import memory_scan_reference

BATCH, HEADS, DIM, HIDDEN = 2, 2, 4, 6
F64 = torch.float64

CASES = [
    pytest.param(kind, objective, use_momentum,
                 id=f"{kind}-{objective}-{'momentum' if use_momentum else 'no_momentum'}")
    for kind in memory.KINDS for objective in ("l2", "dot") for use_momentum in (True, False)
]


def make_inputs(kind: str, seq_len: int, seed: int = 0, dtype: torch.dtype = F64,
                lr_max: float = 0.5, retention_max: float = 0.3,
                batch: int = BATCH, heads: int = HEADS, dim: int = DIM,
                hidden: int = HIDDEN) -> dict:
    """Everything `memory_scan` reads; keys and queries have unit norm, as in Titans."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    def rand(scale):
        return torch.rand(batch, heads, seq_len, generator=g, dtype=dtype) * scale

    weights = init_weights(kind, batch, heads, dim, hidden, generator=g, dtype=dtype)
    momentum = {n: 0.1 * randn(*w.shape) for n, w in weights.items()}
    q, k = (F.normalize(randn(batch, heads, seq_len, dim), dim=-1) for _ in range(2))
    return {"weights": weights, "momentum": momentum, "q": q, "k": k,
            "v": randn(batch, heads, seq_len, dim), "lr": rand(lr_max),
            "retention": rand(retention_max), "decay": rand(0.9)}


def scan(fn, kind, objective, x, *, chunk, use_momentum=True, self_values=False):
    return fn(kind, objective, x["weights"], x["momentum"], x["q"], x["k"], x["v"], x["lr"],
              x["retention"], x["decay"], chunk=chunk, use_momentum=use_momentum,
              self_values=self_values)


def leaves(inputs: dict) -> dict[str, torch.Tensor]:
    """Every tensor of the inputs by name, made a leaf that wants its gradient."""
    out = {}
    for key, value in inputs.items():
        if isinstance(value, dict):
            inputs[key] = {n: t.detach().requires_grad_() for n, t in value.items()}
            out.update({f"{key}.{n}": t for n, t in inputs[key].items()})
        else:
            inputs[key] = value.detach().requires_grad_()
            out[key] = inputs[key]
    return out


def probe(result, seed: int = 1) -> torch.Tensor:
    """A fixed random linear functional of every output, so every output gets a gradient."""
    y, weights, momentum = result
    g = torch.Generator().manual_seed(seed)
    parts = [y, *weights.values(), *momentum.values()]
    return sum((p * torch.randn(p.shape, generator=g, dtype=p.dtype)).sum() for p in parts)


def gradients(fn, kind, objective, inputs, *, chunk, use_momentum, self_values=False):
    tensors = leaves(inputs)
    result = scan(fn, kind, objective, inputs, chunk=chunk, use_momentum=use_momentum,
                  self_values=self_values)
    grads = torch.autograd.grad(probe(result), list(tensors.values()), allow_unused=True)
    # Without momentum the decay and the initial momentum are unused: no gradient is a zero one.
    return result, {name: torch.zeros_like(t) if g is None else g
                    for (name, t), g in zip(tensors.items(), grads, strict=True)}


def assert_results_close(fast, slow):
    torch.testing.assert_close(fast[0], slow[0])
    for name in fast[1]:
        torch.testing.assert_close(fast[1][name], slow[1][name])
        torch.testing.assert_close(fast[2][name], slow[2][name])


def assert_matches_reference(kind, objective, use_momentum, seq_len, chunk, self_values=False,
                             **kwargs):
    fast, fast_grads = gradients(memory_scan, kind, objective, make_inputs(kind, seq_len, **kwargs),
                                 chunk=chunk, use_momentum=use_momentum, self_values=self_values)
    slow, slow_grads = gradients(memory_scan_reference, kind, objective,
                                 make_inputs(kind, seq_len, **kwargs), chunk=chunk,
                                 use_momentum=use_momentum, self_values=self_values)
    assert_results_close(fast, slow)
    assert_grads_close(fast_grads, slow_grads)
    unused = () if use_momentum else ("decay", *[n for n in fast_grads if "momentum" in n])
    assert all(g.abs().sum() > 0 for n, g in fast_grads.items() if n not in unused)


def assert_grads_close(fast, slow):
    assert fast.keys() == slow.keys()
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], msg=lambda m, n=name: f"{n}: {m}")


# ------------------------------------------------------------------------------------------
# The maps themselves


@pytest.mark.parametrize("kind", memory.KINDS)
def test_read_is_the_documented_map(kind):
    g = torch.Generator().manual_seed(0)
    weights = init_weights(kind, 1, 1, DIM, HIDDEN, generator=g, dtype=F64)
    z = torch.randn(DIM, generator=g, dtype=F64)
    if kind == "linear":
        expected = weights["w"][0, 0] @ z
    elif kind == "mlp":
        expected = z + weights["w1"][0, 0] @ F.silu(weights["w2"][0, 0] @ z)
    else:  # plain: P_L σ(... σ(P_1 z)), no residual
        expected, layers = z, int(kind[-1])
        for i in range(1, layers + 1):
            expected = weights[f"p{i}"][0, 0] @ expected
            expected = F.silu(expected) if i < layers else expected
    torch.testing.assert_close(memory_read(kind, weights, z[None, None, None])[0, 0, 0], expected)


@pytest.mark.parametrize("use_momentum", [True, False], ids=["momentum", "no_momentum"])
@pytest.mark.parametrize("size", [1, 3, 6])
def test_chunk_coefficients_match_the_recurrence(size, use_momentum):
    # Run the rule on symbols: M_0, S_0 and each u_i are basis vectors, so the final M and S
    # read off their coefficients directly.
    g = torch.Generator().manual_seed(size)
    lr, retention, decay = (torch.rand(size, generator=g, dtype=F64) for _ in range(3))
    basis = torch.eye(size + 2, dtype=F64)
    m, s = basis[0], basis[1]
    for t in range(size):
        s = (decay[t] * s if use_momentum else 0 * s) - lr[t] * basis[2 + t]
        m = (1 - retention[t]) * m + s
    co = chunk_coefficients(lr, retention, decay, use_momentum)
    torch.testing.assert_close(torch.cat([co.a[None], co.b[None], co.c]), m)
    torch.testing.assert_close(torch.cat([co.d[None], co.e]), s[1:])
    if use_momentum:
        # The brief form: c_i = −θ_i Σ_{t≥i} (B_C / B_t) Π_{j=i+1..t} η_j, B_t = Π_{j≤t} (1 − α_j).
        keep = torch.cumprod(1 - retention, 0)
        for i in range(size):
            terms = [keep[-1] / keep[t] * torch.prod(decay[i + 1 : t + 1]) for t in range(i, size)]
            torch.testing.assert_close(co.c[i], -lr[i] * sum(terms))


# ------------------------------------------------------------------------------------------
# Fast path == reference


@pytest.mark.parametrize(("kind", "objective", "use_momentum"), CASES)
def test_chunk_one_matches_per_token_reference(kind, objective, use_momentum):
    assert_matches_reference(kind, objective, use_momentum, seq_len=7, chunk=1)


@pytest.mark.parametrize("chunk", [4, 5], ids=["chunk4", "chunk5_uneven_last"])
@pytest.mark.parametrize(("kind", "objective", "use_momentum"), CASES)
def test_chunked_matches_chunked_reference(kind, objective, use_momentum, chunk):
    assert_matches_reference(kind, objective, use_momentum, seq_len=12, chunk=chunk)


@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_self_made_values_match_reference(kind, chunk):
    # The memory writes (k_t, M_0(v_t)): its own reading of the value (NL Eq. 84).
    assert_matches_reference(kind, "l2", True, seq_len=9, chunk=chunk, self_values=True)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_chunk_longer_than_sequence_is_one_chunk(kind):
    assert_matches_reference(kind, "l2", True, seq_len=5, chunk=8)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_extreme_rates_match_reference(kind):
    # η = 0 cuts the momentum, α = 1 erases the memory, θ = 0 writes nothing: the closed form
    # must stay exact there, gradients included (no log of zero, no division by a product).
    inputs = make_inputs(kind, 12)
    inputs["decay"][..., ::3] = 0.0
    inputs["retention"][..., 1::4] = 1.0
    inputs["retention"][..., 2::4] = 0.0
    inputs["lr"][..., ::5] = 0.0
    fast, fast_grads = gradients(memory_scan, kind, "l2", dict(inputs), chunk=4,
                                 use_momentum=True)
    slow, slow_grads = gradients(memory_scan_reference, kind, "l2", dict(inputs), chunk=4,
                                 use_momentum=True)
    assert_results_close(fast, slow)
    assert_grads_close(fast_grads, slow_grads)


def test_gradients_match_finite_differences():
    inputs = make_inputs("mlp", 5, batch=1, heads=1, dim=2, hidden=3)
    names = list(inputs["weights"])

    def fn(q, k, v, lr, retention, decay, *weights_and_momentum):
        weights = dict(zip(names, weights_and_momentum[: len(names)], strict=True))
        momentum = dict(zip(names, weights_and_momentum[len(names) :], strict=True))
        y, w, s = memory_scan("mlp", "l2", weights, momentum, q, k, v, lr, retention, decay,
                              chunk=2)
        return (y, *w.values(), *s.values())

    args = [inputs[n] for n in ("q", "k", "v", "lr", "retention", "decay")]
    args += [*inputs["weights"].values(), *inputs["momentum"].values()]
    assert torch.autograd.gradcheck(fn, [a.requires_grad_() for a in args])


# ------------------------------------------------------------------------------------------
# Properties of the rule


@pytest.mark.parametrize("use_momentum", [True, False], ids=["momentum", "no_momentum"])
@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_two_halves_equal_one_call(kind, use_momentum):
    inputs = make_inputs(kind, 12)
    y, weights, momentum = scan(memory_scan, kind, "l2", inputs, chunk=4,
                                use_momentum=use_momentum)
    first = {key: (value if isinstance(value, dict) else value[:, :, :8])
             for key, value in inputs.items()}
    y1, w1, s1 = scan(memory_scan, kind, "l2", first, chunk=4, use_momentum=use_momentum)
    second = {key: value[:, :, 8:] for key, value in inputs.items() if not isinstance(value, dict)}
    y2, w2, s2 = scan(memory_scan, kind, "l2", {**second, "weights": w1, "momentum": s1},
                      chunk=4, use_momentum=use_momentum)
    torch.testing.assert_close(torch.cat([y1, y2], dim=-2), y)
    for name in weights:
        torch.testing.assert_close(w2[name], weights[name])
        torch.testing.assert_close(s2[name], momentum[name])


@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_memory_learns_repeated_pairs(kind, chunk):
    pairs, repeats = 4, 16
    inputs = make_inputs(kind, pairs * repeats, dim=8, hidden=16)
    g = torch.Generator().manual_seed(2)
    keys = F.normalize(torch.randn(BATCH, HEADS, pairs, 8, generator=g, dtype=F64), dim=-1)
    values = torch.randn(BATCH, HEADS, pairs, 8, generator=g, dtype=F64)
    inputs.update(k=keys.repeat(1, 1, repeats, 1), v=values.repeat(1, 1, repeats, 1),
                  lr=torch.full_like(inputs["lr"], 0.1 / chunk),
                  retention=torch.zeros_like(inputs["lr"]),
                  decay=torch.full_like(inputs["lr"], 0.5), momentum=None)
    _, weights, _ = scan(memory_scan, kind, "l2", inputs, chunk=chunk)

    def error(w):
        return (memory_read(kind, w, keys) - values).norm()

    # Within a chunk the same pairs' gradients pile up at one state, so θ is scaled by 1/C to
    # keep the summed step the same; chunked learning is slower, hence the loose factor.
    assert error(weights) < 0.5 * error(inputs["weights"])


@pytest.mark.parametrize("chunk", [16, 64])
@pytest.mark.parametrize("objective", ["l2", "dot"])
@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_long_sequence_stays_finite(kind, objective, chunk):
    # θ ≤ 1 for the linear memory. For the MLP, θ ≤ 0.5: near θ = 1 gradient descent itself
    # overshoots (the curvature in W1 is ‖σ(W2 k)‖², not bounded by ‖k‖), and the per-token
    # reference diverges identically; that is the rule's dynamics, not this implementation's.
    inputs = make_inputs(kind, 2048, dtype=torch.float32, lr_max=1.0 if kind == "linear" else 0.5,
                         retention_max=1.0, dim=8, hidden=16)
    # Long runs of near-total forgetting make in-chunk products underflow to zero.
    inputs["retention"][..., 100:300] = 1.0 - 1e-3 * inputs["retention"][..., 100:300]
    y, weights, momentum = scan(memory_scan, kind, objective, inputs, chunk=chunk)
    assert torch.isfinite(y).all()
    assert all(torch.isfinite(t).all() for t in [*weights.values(), *momentum.values()])


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_empty_sequence_keeps_the_state(kind):
    inputs = make_inputs(kind, 0)
    y, weights, momentum = scan(memory_scan, kind, "l2", inputs, chunk=4)
    assert y.shape == (BATCH, HEADS, 0, DIM)
    for name, w in inputs["weights"].items():
        assert torch.equal(weights[name], w)
        assert torch.equal(momentum[name], inputs["momentum"][name])


def test_no_momentum_ignores_incoming_momentum():
    inputs = make_inputs("linear", 6)
    with_momentum = scan(memory_scan, "linear", "l2", inputs, chunk=2, use_momentum=False)
    without = scan(memory_scan, "linear", "l2", {**inputs, "momentum": None}, chunk=2,
                   use_momentum=False)
    assert_results_close(with_momentum, without)


def test_one_step_per_chunk_not_per_token(monkeypatch):
    calls = []
    step = memory._chunk_step
    monkeypatch.setattr(memory, "_chunk_step", lambda *a: calls.append(1) or step(*a))
    scan(memory_scan, "mlp", "l2", make_inputs("mlp", 50), chunk=8)
    assert len(calls) == 7  # ceil(50 / 8)


@pytest.mark.parametrize(("kind", "objective", "chunk"),
                         [("conv", "l2", 1), ("linear", "huber", 1), ("linear", "l2", 0)])
def test_rejects_bad_arguments(kind, objective, chunk):
    inputs = make_inputs("linear", 4)
    with pytest.raises(ValueError):
        scan(memory_scan, kind, objective, inputs, chunk=chunk)


@pytest.mark.slow
def test_fast_path_is_much_faster_than_reference():
    # One thread: on a shared machine a busy core stalls multi-threaded kernels far more than
    # it stalls the reference's many tiny ones, which would skew the comparison.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert_much_faster()
    finally:
        torch.set_num_threads(threads)


def assert_much_faster():
    inputs = make_inputs("mlp", 256, dtype=torch.float32, dim=8, hidden=16)

    def best_time(fn):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            scan(fn, "mlp", "l2", inputs, chunk=64)
            times.append(time.perf_counter() - start)
        return min(times)

    assert best_time(memory_scan_reference) > 5 * best_time(memory_scan)
