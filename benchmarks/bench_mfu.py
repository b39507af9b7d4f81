"""Model FLOPs utilisation: the measured matmul peak of this machine, then the share of it the
Transformer's and Hope's training steps reach, at width 256 and 512.

The peak is the best of several square ``torch.mm`` (fp32, then bf16) at the benchmark's thread
count. A step's model FLOPs follow the usual convention: 3 x the forward FLOPs per token (the
backward costs twice the forward) x the tokens of a step, the forward FLOPs per token being
the compiler's cost model (`compiler/passes/cost.py`, what `nestgraph compile --emit cost`
prints). What an in-context level adds beyond that (its inner gradients, its writes, the
second-order backward) is not counted as model FLOPs: it is the overhead MFU measures. Steps
are CPU time (`time.process_time`), interleaved rep by rep, fp32.

    python benchmarks/bench_mfu.py [--reps 2] [--threads 1] [--widths 256 512]
        [--out benchmarks/results/mfu.json]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_levels import Bench
from report import machine, write

SPECS = ("transformer", "hope")


def matmul_peak(dtype: torch.dtype, size: int = 1024, reps: int = 5) -> float:
    """Best FLOP/s of a square matmul of this size and dtype (CPU time)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        start = time.process_time()
        torch.mm(a, b)
        best = min(best, time.process_time() - start)
    # CPU time counts every thread: divide by the threads to get wall-clock FLOP/s per process.
    return 2 * size**3 / (best / torch.get_num_threads())


def forward_flops_per_token(spec: str, overrides: list[str]) -> int:
    from nestgraph.compiler import compile_spec
    from nestgraph.compiler.ir import facts
    from nestgraph.spec import read_document

    cost = facts(compile_spec(*read_document(spec, overrides)).graph).cost
    return sum(c["flops_per_token"] for c in cost.values())


def main() -> None:
    from nestgraph.runtime.train.data import load_corpus

    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--out", default="benchmarks/results/mfu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"matmul peak: fp32 {peaks['fp32'] / 1e9:.1f}, bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s")
    corpus = load_corpus(None, max_bytes=1_000_000)
    configs = {f"{spec} (width {w})": (spec, [f"model.dim={w}"])
               for w in args.widths for spec in SPECS}
    with tempfile.TemporaryDirectory() as tmp:
        benches = [Bench(label, spec, over, Path(tmp), corpus)
                   for label, (spec, over) in configs.items()]
        for rep in range(args.reps):
            for bench in benches:
                bench.times.append(bench.step())
            print(f"rep {rep + 1}/{args.reps} done", flush=True)
    results = {}
    for bench in benches:
        spec, overrides = configs[bench.label]
        tokens = bench.cfg["batch"] * bench.cfg["seq_len"]
        model_flops = 3 * forward_flops_per_token(spec, overrides) * tokens
        step = statistics.median(bench.times) / args.threads
        results[bench.label] = {"params": bench.params, "model_flops_per_step": model_flops,
                                "s_per_step": step, "tokens_per_s": tokens / step,
                                "mfu_fp32": model_flops / step / peaks["fp32"]}
        row = results[bench.label]
        print(f"{bench.label:22s} {row['params']:>10,} params {step:8.3f} s/step "
              f"{row['tokens_per_s']:9.0f} tok/s  MFU {row['mfu_fp32']:6.1%}")
    write(args.out, {"benchmark": "model FLOPs utilisation against the measured matmul peak",
                     "machine": machine(threads=args.threads), "reps": args.reps,
                     "matmul_peak_flops": peaks, "batch_x_seq": "8 x 256",
                     "results": results})


if __name__ == "__main__":
    main()
