"""What chunk-parallel training buys the self-modifying Titans: the layer against its per-token
reference (the same layer with ``reference=True``).

Forward plus backward throughput (tokens per second) of the whole layer: its projection
memories (k, v, η, α, each a residual MLP per head, writing self-made values by DGD) and its
main memory, the outer gradient taken with respect to every parameter (initial states
included), as the outer level of Hope takes it. The main and projection memories use the same
chunk here, so that one number names the setting. Both paths run in the same process, timed
in turn rep by rep, and are reported as a ratio.

    python benchmarks/bench_selfmod.py [--batch 8] [--seq-len 512] [--out FILE]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from report import machine, write

from nestgraph.runtime.layers.selfmod import SelfModifyingTitans

# (heads, dim per head), model width 128. One head of 128 is left out: the per-token reference
# keeps every token's weights of all five memories for its backward pass, which at batch 8 and
# 512 tokens outgrows 24 GB.
SHAPES = [(4, 32)]
CHUNKS = [16, 64]


def build(heads: int, chunk: int, reference: bool) -> SelfModifyingTitans:
    torch.manual_seed(0)
    layer = SelfModifyingTitans(128, heads, kind="mlp", hidden=2 * 128 // heads, chunk=chunk,
                                proj_chunk=chunk, max_lr=1 / chunk, proj_max_lr=1 / chunk)
    layer.reference = reference
    return layer


def step(layer: SelfModifyingTitans, x: torch.Tensor) -> float:
    layer.zero_grad(set_to_none=True)
    start = time.perf_counter()
    layer(x).square().mean().backward()
    return time.perf_counter() - start


def measure(layers: dict[str, SelfModifyingTitans], x: torch.Tensor,
            repeats: int) -> dict[str, float]:
    """Median seconds per pass of each layer, timed rep by rep in turn, so that both paths
    meet the same machine load (this CPU's timings drift by tens of percent run to run)."""
    for _ in range(2):  # warm-up: the allocator's first passes are slower
        for layer in layers.values():
            step(layer, x)
    times: dict[str, list[float]] = {label: [] for label in layers}
    for _ in range(repeats):
        for label, layer in layers.items():
            times[label].append(step(layer, x))
    return {label: statistics.median(t) for label, t in times.items()}


def agree(fast: SelfModifyingTitans, slow: SelfModifyingTitans, x: torch.Tensor) -> float:
    """Largest relative difference of the two paths' outputs (a sanity check, float32)."""
    with torch.no_grad():
        a, b = fast(x), slow(x)
    return float((a - b).abs().max() / b.abs().max())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/selfmod.json")
    args = parser.parse_args()
    x = torch.randn(args.batch, args.seq_len, 128, generator=torch.Generator().manual_seed(1))
    tokens = args.batch * args.seq_len
    rows = []
    print(f"{'heads x dim':>12} {'chunk':>6} {'parallel tok/s':>15} {'reference tok/s':>16} "
          f"{'speed-up':>9}", flush=True)
    for heads, dim in SHAPES:
        for chunk in CHUNKS:
            fast = build(heads, chunk, reference=False)
            slow = copy.deepcopy(fast)
            slow.reference = True
            seconds = measure({"chunk-parallel": fast, "per-token reference": slow}, x,
                              args.repeats)
            row = {"heads": heads, "dim": dim, "chunk": chunk,
                   **{f"{label} tokens_per_s": tokens / s for label, s in seconds.items()},
                   "speed_up": seconds["per-token reference"] / seconds["chunk-parallel"],
                   "max_relative_difference": agree(fast, slow, x[:2, :128])}
            rows.append(row)
            print(f"{heads:>5} x {dim:<4} {chunk:>6} {row['chunk-parallel tokens_per_s']:>15.0f} "
                  f"{row['per-token reference tokens_per_s']:>16.0f} {row['speed_up']:>8.1f}x",
                  flush=True)
    report = {"benchmark": "SelfModifyingTitans chunk-parallel vs per-token reference, "
                           "forward + backward",
              "layer": "dim 128, residual-MLP memories (hidden 2x head width), static q, "
                       "self-made values, l2 objective, DGD, float32",
              "machine": machine(),
              "batch": args.batch, "seq_len": args.seq_len, "repeats": args.repeats,
              "results": rows}
    write(args.out, report)


if __name__ == "__main__":
    main()
