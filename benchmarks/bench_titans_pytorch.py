"""nestgraph's Titans memory layer against `titans_pytorch.NeuralMemory`, forward + backward.

Both layers are built at the same width, heads, chunk size and memory depth (a two-layer MLP
memory per head, momentum on, learned rates), fed the same input, and timed in the same process,
interleaved rep by rep, so the ratio compares across machines. titans_pytorch runs in two modes:

* ``default``: its default, ``batch_size=None``: the surprise of every chunk is taken at the
  initial memory weights, so all chunks' gradients are computed at once;
* ``commit every chunk``: ``batch_size=chunk``: the weights are committed after every chunk and
  the next chunk's gradients are taken there, the recurrence `memory_scan` computes.

The two layers are not the same function (projections, norms, gates, memory model, where rates
are produced). Before timing, the pieces that can be made equal from outside both libraries
(constructor arguments, a memory model passed in, weights copied) are checked on the same input;
see `check_matching` and the ``matching`` entry of the JSON.

Needs the optional extra: ``pip install 'nestgraph[bench]'``.

    python benchmarks/bench_titans_pytorch.py [--dims 128 256] [--repeats 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nestgraph.runtime.layers.titans import NeuralMemory, split_heads
from nestgraph.runtime.ops.memory import memory_read

titans_pytorch = None  # the optional extra, imported by `main` (so `--help` works without it)

HEADS = 4
CHUNKS = [16, 64]
EXPANSION = 4  # memory hidden width / head width: titans_pytorch's default_model_kwargs
MAX_LR = 0.005  # nestgraph's default largest step size


def build_nestgraph(dim: int, chunk: int) -> NeuralMemory:
    """Every rate produced per token; no convolution, as titans_pytorch has none."""
    return NeuralMemory(dim, HEADS, kind="mlp", hidden=EXPANSION * dim // HEADS, conv=0,
                        qk_norm=True, gate=True, chunk=chunk, objective="l2", lr=None,
                        forget=None, momentum=None, max_lr=MAX_LR)


def build_titans(dim: int, chunk: int, commit_every_chunk: bool) -> nn.Module:
    """Its MemoryMLP of depth 2 (with its residual + LayerNorm wrapper), SiLU projections,
    q/k RMSNorm, output RMSNorm and per-head gate; no input pre-norm, as ours has none.

    Its largest step is nestgraph's: its loss is a mean over the head width where nestgraph's
    is a sum. (Its default, 1, diverges within 512 tokens when committing every chunk.)
    """
    return titans_pytorch.NeuralMemory(
        dim, chunk_size=chunk, batch_size=chunk if commit_every_chunk else None,
        dim_head=dim // HEADS, heads=HEADS, momentum=True, activation=nn.SiLU(),
        pre_rmsnorm=False, post_rmsnorm=True, qk_rmsnorm=True,
        default_step_transform_max_lr=MAX_LR * (dim // HEADS),
        default_model_kwargs={"depth": 2, "expansion_factor": float(EXPANSION)})


LAYOUT = {
    "nestgraph": "q/k/v = SiLU(Linear(x)); l2-normalised q, k; memory z + W1 silu(W2 z) per head; "
                 "lr, forget and momentum produced per token; every token reads the state at "
                 "the start of its chunk; output RMSNorm per head, per-channel sigmoid gate, "
                 "output Linear",
    "titans_pytorch": "q/k/v = SiLU(Linear(x)); RMSNorm on q, k; memory z + LayerNorm(W2 gelu(W1 "
                      "z)) per head (MemoryMLP depth 2 in its ResidualNorm); lr produced per "
                      "token, momentum and forget per chunk (from the chunk's mean input); "
                      "token t reads the state after the chunk holding t + 1; output RMSNorm "
                      "per head, per-head sigmoid gate, output Linear",
}


# --- matching: the pieces that can be made the same function ------------------------------


class ResidualSiLUMemory(nn.Module):
    """nestgraph's memory ``z + W1 silu(W2 z)`` written as a titans_pytorch memory model."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        # titans_pytorch multiplies ``x @ weight``: weights are stored (in, out).
        self.weights = nn.ParameterList([nn.Parameter(torch.zeros(dim, hidden)),
                                         nn.Parameter(torch.zeros(hidden, dim))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_in, w_out = self.weights
        return x + F.silu(x @ w_in) @ w_out


def matched_pair(dim: int, chunk: int, commit_every_chunk: bool, max_lr: float
                 ) -> tuple[NeuralMemory, nn.Module]:
    """Both layers reduced to what they share, nestgraph's weights copied into titans_pytorch.

    Shared: SiLU q/k/v projections, no q/k norm, the residual SiLU MLP memory, l2 objective,
    a per-token learned step size, no momentum, no forgetting, output RMSNorm per head, output
    Linear. titans_pytorch's mean-over-features loss is nestgraph's sum divided by the head
    width, so its step size is scaled by that width; its per-head output gate (it cannot be
    turned off with several heads) is pinned at 1/2 by zero weights and the 1/2 is folded into
    the output Linear (both exact powers of two).
    """
    head, hidden = dim // HEADS, EXPANSION * dim // HEADS
    ours = NeuralMemory(dim, HEADS, kind="mlp", hidden=hidden, conv=0, qk_norm=False,
                        gate=False, chunk=chunk, objective="l2", lr=None, forget=0.0,
                        momentum=0.0, max_lr=max_lr / head).double()
    theirs = titans_pytorch.NeuralMemory(
        dim, chunk_size=chunk, batch_size=chunk if commit_every_chunk else None, dim_head=head,
        heads=HEADS, model=ResidualSiLUMemory(head, hidden), mem_model_norm_add_residual=False,
        momentum=False, activation=nn.SiLU(), pre_rmsnorm=False, post_rmsnorm=True,
        qk_rmsnorm=False, default_step_transform_max_lr=max_lr).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        # nestgraph starts W1 at zero (the memory is the identity); any value will do here.
        ours.memory.w1.copy_(torch.randn(ours.memory.w1.shape, generator=g) * hidden**-0.5)
        q, k, v = ours.proj.qkv.weight.chunk(3, dim=0)
        theirs.to_queries[0].weight.copy_(q)
        theirs.to_keys[0].weight.copy_(k)
        theirs.to_values[0].weight.copy_(v)
        theirs.to_adaptive_step[0].weight.copy_(ours.proj.rates.weight)
        theirs.to_adaptive_step[0].bias.copy_(ours.proj.rates.bias)
        theirs.memory_model_parameters[0].copy_(ours.memory.w2.transpose(-1, -2))
        theirs.memory_model_parameters[1].copy_(ours.memory.w1.transpose(-1, -2))
        theirs.to_decay_factor[0].weight.zero_()
        theirs.to_decay_factor[0].bias.fill_(-1000.0)  # sigmoid underflows to 0: no forgetting
        theirs.retrieve_gate[0].weight.zero_()  # sigmoid(0) = 1/2 for every head
        theirs.combine_heads.weight.copy_(2 * ours.proj.out.weight)
    theirs.multihead_rmsnorm.rmsnorm.eps = ours.proj.norm.eps  # its default eps differs
    return ours, theirs


def nestgraph_states(layer: NeuralMemory, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """The memory after 0, 1, 2, ... chunks: the layer fed one chunk per call keeps its state."""
    cache: dict = {}
    states = [layer.memory.expand(x.shape[0])]
    for piece in x.split(layer.chunk, dim=1):
        layer(piece, cache)
        states.append(cache[id(layer)][0])
    return states


def read_after_chunk(layer: NeuralMemory, x: torch.Tensor) -> torch.Tensor:
    """What the matched nestgraph layer outputs if token t reads the state after the chunk
    holding t + 1 (titans_pytorch's read), built from its own modules and `memory_read`."""
    b, t, d = x.shape
    states = nestgraph_states(layer, x)
    q = split_heads(F.silu(layer.proj.qkv(x)).chunk(3, dim=-1)[0], layer.heads)
    index = [(i + 1) // layer.chunk for i in range(t)]
    y = torch.cat([memory_read("mlp", states[n], q[..., i : i + 1, :])
                   for i, n in enumerate(index)], dim=-2)
    return layer.proj.out(layer.proj.norm(y).transpose(1, 2).reshape(b, t, d))


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def check_matching(dim: int, chunk: int, seq_len: int, batch: int = 2,
                   max_lr: float = 0.1) -> dict:
    """Matched layers on one float64 input: outputs, final memory, gradients."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(batch, seq_len, dim, generator=g, dtype=torch.float64)
    probe = torch.randn(batch, seq_len, dim, generator=g, dtype=torch.float64)
    position = torch.arange(seq_len)
    same_read = position % chunk != chunk - 1  # both read the chunk-start state here
    result = {"dim": dim, "heads": HEADS, "chunk": chunk, "seq_len": seq_len, "batch": batch,
              "dtype": "float64"}

    ours, theirs = matched_pair(dim, chunk, commit_every_chunk=True, max_lr=max_lr)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    cache: dict = {}
    out_a = ours(xa, cache)
    out_b, state = theirs(xb)
    mem_a, mem_b = cache[id(ours)][0], state.weights
    final = max(max_rel(mem_b["weights.0"], mem_a["w2"].transpose(-1, -2).flatten(0, 1)),
                max_rel(mem_b["weights.1"], mem_a["w1"].transpose(-1, -2).flatten(0, 1)))
    # The loss sees only the positions where both layers read the same state.
    mask = same_read[None, :, None].double()
    (out_a * probe * mask).sum().backward()
    (out_b * probe * mask).sum().backward()
    qkv_b = torch.cat([theirs.to_queries[0].weight.grad, theirs.to_keys[0].weight.grad,
                       theirs.to_values[0].weight.grad])
    grads = {
        "input": max_rel(xb.grad, xa.grad),
        "qkv projection": max_rel(qkv_b, ours.proj.qkv.weight.grad),
        "step-size projection": max(
            max_rel(theirs.to_adaptive_step[0].weight.grad, ours.proj.rates.weight.grad),
            max_rel(theirs.to_adaptive_step[0].bias.grad, ours.proj.rates.bias.grad)),
        "initial memory W2": max_rel(theirs.memory_model_parameters[0].grad,
                                     ours.memory.w2.grad.transpose(-1, -2)),
        "initial memory W1": max_rel(theirs.memory_model_parameters[1].grad,
                                     ours.memory.w1.grad.transpose(-1, -2)),
        "output projection": max_rel(2 * theirs.combine_heads.weight.grad,
                                     ours.proj.out.weight.grad),
    }
    with torch.no_grad():
        shifted = read_after_chunk(ours, x)
    result["commit every chunk"] = {
        "max_rel_diff_output_where_reads_agree": max_rel(out_b[:, same_read], out_a[:, same_read]),
        "max_rel_diff_output_chunk_final_tokens": max_rel(out_b[:, ~same_read],
                                                          out_a[:, ~same_read]),
        "max_rel_diff_output_vs_nestgraph_read_after_chunk": max_rel(out_b, shifted),
        "max_rel_diff_final_memory": final,
        "max_rel_diff_gradients": grads,
    }

    # Its default mode takes every chunk's gradients at the initial weights: the states agree
    # only up to the end of the first chunk, so only reads of those two states can agree.
    ours, theirs = matched_pair(dim, chunk, commit_every_chunk=False, max_lr=max_lr)
    with torch.no_grad():
        out_a, out_b = ours(x), theirs(x)[0]
    early = same_read & (position < 2 * chunk)
    later = same_read & (position >= 2 * chunk)
    result["default"] = {
        "max_rel_diff_output_reads_of_first_two_states": max_rel(out_b[:, early],
                                                                 out_a[:, early]),
        "max_rel_diff_output_later_reads": max_rel(out_b[:, later], out_a[:, later]),
    }
    return result


# --- timing ----------------------------------------------------------------------------------


def step(layer: nn.Module, x: torch.Tensor) -> float:
    """Seconds for one forward and backward pass (gradients for every parameter and x)."""
    x = x.detach().requires_grad_()
    start = time.perf_counter()
    out = layer(x)
    if isinstance(out, tuple):  # titans_pytorch returns (output, state)
        out = out[0]
    out.square().mean().backward()
    seconds = time.perf_counter() - start
    layer.zero_grad(set_to_none=True)
    if not torch.isfinite(out).all():
        raise RuntimeError(f"{type(layer).__module__} produced a non-finite output")
    return seconds


def measure(layers: dict[str, nn.Module], x: torch.Tensor,
            repeats: int) -> dict[str, list[float]]:
    """Seconds per rep for every layer; reps interleaved so a change in load hits all alike."""
    for layer in layers.values():
        step(layer, x)  # warm-up
    times: dict[str, list[float]] = {label: [] for label in layers}
    for _ in range(repeats):
        for label, layer in layers.items():
            times[label].append(step(layer, x))
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/titans_pytorch.json")
    args = parser.parse_args()
    global titans_pytorch
    try:
        import titans_pytorch
    except ImportError as err:
        raise SystemExit("this benchmark needs titans-pytorch: pip install 'nestgraph[bench]'") \
            from err
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()

    matching = [check_matching(128, chunk, seq_len=4 * max(CHUNKS)) for chunk in CHUNKS]
    for m in matching:
        c = m["commit every chunk"]
        print(f"matching, chunk {m['chunk']}: output {c['max_rel_diff_output_where_reads_agree']:.1e}"
              f" where reads agree, final memory {c['max_rel_diff_final_memory']:.1e}, worst "
              f"gradient {max(c['max_rel_diff_gradients'].values()):.1e}", flush=True)

    tokens = args.batch * args.seq_len
    labels = ["nestgraph", "titans_pytorch default", "titans_pytorch commit every chunk"]
    rows = []
    print(f"{'dim':>4} {'chunk':>6} {'nestgraph tok/s':>16} {'titans default':>15} "
          f"{'titans commit':>14} {'ratio (default)':>16} {'ratio (commit)':>15}", flush=True)
    for dim in args.dims:
        for chunk in CHUNKS:
            torch.manual_seed(0)
            layers = {labels[0]: build_nestgraph(dim, chunk),
                      labels[1]: build_titans(dim, chunk, commit_every_chunk=False),
                      labels[2]: build_titans(dim, chunk, commit_every_chunk=True)}
            x = torch.randn(args.batch, args.seq_len, dim)
            times = measure(layers, x, args.repeats)
            rate = {label: tokens / statistics.median(t) for label, t in times.items()}
            row = {"dim": dim, "heads": HEADS, "head_dim": dim // HEADS,
                   "memory_hidden": EXPANSION * dim // HEADS, "chunk": chunk,
                   **{f"{label} tokens_per_s": rate[label] for label in labels},
                   "ratio nestgraph / titans_pytorch default": rate[labels[0]] / rate[labels[1]],
                   "ratio nestgraph / titans_pytorch commit every chunk":
                       rate[labels[0]] / rate[labels[2]],
                   "seconds_per_rep": times,
                   "load_average_1min_after": os.getloadavg()[0],
                   "parameters": {label: sum(p.numel() for p in layer.parameters())
                                  for label, layer in layers.items()}}
            rows.append(row)
            print(f"{dim:>4} {chunk:>6} {rate[labels[0]]:>16.0f} {rate[labels[1]]:>15.0f} "
                  f"{rate[labels[2]]:>14.0f} {row['ratio nestgraph / titans_pytorch default']:>15.2f}x"
                  f" {row['ratio nestgraph / titans_pytorch commit every chunk']:>14.2f}x",
                  flush=True)

    report = {
        "benchmark": "nestgraph NeuralMemory vs titans_pytorch.NeuralMemory, forward + backward",
        "versions": {"nestgraph": version("nestgraph"), "titans-pytorch": version("titans-pytorch"),
                     "torch": torch.__version__, "python": platform.python_version()},
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "threads": torch.get_num_threads(),
                    "load_average_1_5_15min_at_start": load_start,
                    "load_average_1_5_15min_at_end": os.getloadavg()},
        "config": {"heads": HEADS, "memory": f"2-layer MLP per head, hidden = {EXPANSION} x head "
                   "width", "momentum": True, "rates": "learned", "batch": args.batch,
                   "seq_len": args.seq_len, "dtype": "float32", "repeats": args.repeats,
                   "statistic": "median seconds per forward + backward, after one warm-up step",
                   "loss": "mean square of the layer output; gradients for all parameters and "
                           "the input"},
        "layers": LAYOUT,
        "titans_pytorch_modes": {
            "default": "batch_size=None: every chunk's gradients at the initial weights",
            "commit every chunk": "batch_size=chunk: gradients at the state the previous chunk "
                                  "left, the recurrence nestgraph computes"},
        "results": rows,
        "matching": {
            "what": "Both layers reduced to what they share (SiLU q/k/v projections, no q/k "
                    "norm, nestgraph's residual SiLU MLP memory passed to titans_pytorch as its "
                    "model, l2 objective, learned per-token step size, no momentum, no "
                    "forgetting, output RMSNorm, output Linear), nestgraph's weights copied "
                    "over; its per-head output gate pinned at 1/2 and folded into the output "
                    "weights. Gradients of a loss over the positions where both read the same "
                    "state.",
            "not_comparable": "With momentum or forgetting on, the functions differ: "
                              "titans_pytorch applies momentum and forgetting once per chunk "
                              "with per-chunk rates, nestgraph per token inside the chunk. Also "
                              "never the same: its default memory (LayerNorm inside the "
                              "residual, GELU), RMSNorm on q/k against l2 normalisation, its "
                              "per-head output gate against a per-channel one.",
            "read_offset": "titans_pytorch's token t reads the state after the chunk holding "
                           "t + 1, so the last token of each chunk reads the memory that "
                           "includes its own chunk's writes; nestgraph's token t reads the "
                           "state at the start of its chunk. Outputs agree except at those "
                           "chunk-final tokens, where titans_pytorch equals nestgraph's memory "
                           "read one chunk later.",
            "checks": matching},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
