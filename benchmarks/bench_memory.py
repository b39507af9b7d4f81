"""What chunk-parallel training buys: `memory_scan` against its per-token reference.

Forward plus backward throughput (tokens per second) of the MLP memory with momentum, l2
objective, the outer gradient taken with respect to every input (queries, keys, values, rates,
initial weights), as a meta-learning outer level would. Both paths are measured in the same
process, one after the other, and reported as a ratio, so the figures compare across machines.

    python benchmarks/bench_memory.py [--batch 8] [--repeats 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nestgraph.runtime.ops.memory import init_weights, memory_scan
from nestgraph.runtime.ops.memory_naive import memory_scan_reference

SHAPES = [(1, 128), (4, 32)]  # (heads, dim per head): model width 128 either way
CHUNKS = [16, 64]
PATHS = {"chunk-parallel": memory_scan, "per-token reference": memory_scan_reference}


def make_inputs(batch: int, heads: int, dim: int, hidden: int, seq_len: int) -> dict:
    """Unit-norm keys and queries; rates small enough that the memory stays stable."""
    g = torch.Generator().manual_seed(0)
    weights = init_weights("mlp", batch, heads, dim, hidden, generator=g)
    q, k = (F.normalize(torch.randn(batch, heads, seq_len, dim, generator=g), dim=-1)
            for _ in range(2))

    def rate(scale):
        return torch.rand(batch, heads, seq_len, generator=g) * scale

    return {"weights": weights, "q": q, "k": k,
            "v": torch.randn(batch, heads, seq_len, dim, generator=g),
            "lr": rate(0.01), "retention": rate(0.1), "decay": rate(0.9)}


def step(fn, inputs: dict, chunk: int) -> float:
    """Seconds for one forward and backward pass."""
    leaves = {n: t.detach().requires_grad_() for n, t in inputs["weights"].items()}
    tensors = {n: inputs[n].detach().requires_grad_()
               for n in ("q", "k", "v", "lr", "retention", "decay")}
    start = time.perf_counter()
    y, weights, _ = fn("mlp", "l2", leaves, None, tensors["q"], tensors["k"], tensors["v"],
                       tensors["lr"], tensors["retention"], tensors["decay"], chunk=chunk)
    loss = y.square().mean() + sum(w.square().mean() for w in weights.values())
    loss.backward()
    return time.perf_counter() - start


def measure(fn, inputs: dict, chunk: int, repeats: int) -> float:
    step(fn, inputs, chunk)  # warm-up
    return statistics.median(step(fn, inputs, chunk) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--expansion", type=int, default=2, help="MLP hidden width / dim")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/memory.json")
    args = parser.parse_args()
    tokens = args.batch * args.seq_len
    rows = []
    print(f"{'heads x dim':>12} {'chunk':>6} {'parallel tok/s':>15} {'reference tok/s':>16} "
          f"{'speed-up':>9}", flush=True)
    for heads, dim in SHAPES:
        inputs = make_inputs(args.batch, heads, dim, dim * args.expansion, args.seq_len)
        for chunk in CHUNKS:
            seconds = {label: measure(fn, inputs, chunk, args.repeats)
                       for label, fn in PATHS.items()}
            row = {"heads": heads, "dim": dim, "hidden": dim * args.expansion, "chunk": chunk,
                   **{f"{label} tokens_per_s": tokens / s for label, s in seconds.items()},
                   "speed_up": seconds["per-token reference"] / seconds["chunk-parallel"]}
            rows.append(row)
            print(f"{heads:>5} x {dim:<4} {chunk:>6} {row['chunk-parallel tokens_per_s']:>15.0f} "
                  f"{row['per-token reference tokens_per_s']:>16.0f} {row['speed_up']:>8.1f}x",
                  flush=True)
    report = {"benchmark": "memory_scan vs memory_scan_reference, forward + backward",
              "memory": "mlp (residual, SiLU), l2 objective, momentum on, float32",
              "machine": {"cpu": platform.processor() or platform.machine(),
                          "threads": torch.get_num_threads(), "torch": torch.__version__,
                          "load_average_1min_at_end": os.getloadavg()[0]},
              "batch": args.batch, "seq_len": args.seq_len, "repeats": args.repeats,
              "results": rows}
    if args.batch != 8:
        report["note"] = (f"batch {args.batch} instead of 8: the per-token reference keeps every"
                          " token's weights for the backward pass")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
