"""bf16 autocast against fp32: the training step of the Transformer and Hope at width 256, both
precisions in one process, interleaved rep by rep, CPU time (`time.process_time`).

    python benchmarks/bench_bf16.py [--reps 3] [--threads 1] [--width 256]
        [--out benchmarks/results/bf16.json]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from bench_levels import Bench
from report import machine, write

SPECS = ("transformer", "hope")


def main() -> None:
    from nestgraph.runtime.train.data import load_corpus

    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--out", default="benchmarks/results/bf16.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = load_corpus(None, max_bytes=1_000_000)
    configs = {f"{spec} {p}": (spec, [f"model.dim={args.width}", f"train.precision={p}"])
               for spec in SPECS for p in ("fp32", "bf16")}
    with tempfile.TemporaryDirectory() as tmp:
        benches = {label: Bench(label, spec, over, Path(tmp), corpus)
                   for label, (spec, over) in configs.items()}
        for rep in range(args.reps):
            for bench in benches.values():
                bench.times.append(bench.step())
            print(f"rep {rep + 1}/{args.reps} done", flush=True)
    results = {}
    for spec in SPECS:
        fp32, bf16 = (statistics.median(benches[f"{spec} {p}"].times) for p in ("fp32", "bf16"))
        results[spec] = {"fp32_s_per_step": fp32, "bf16_s_per_step": bf16,
                         "bf16_speed_up": fp32 / bf16}
        print(f"{spec:12s} fp32 {fp32:7.3f} s  bf16 {bf16:7.3f} s  bf16 is {fp32 / bf16:.2f}x")
    write(args.out, {"benchmark": f"bf16 autocast vs fp32 training steps at width {args.width}",
                     "machine": machine(threads=args.threads), "reps": args.reps,
                     "batch_x_seq": "8 x 256", "results": results})


if __name__ == "__main__":
    main()
