"""Hope training at growing sequence lengths: tokens per second, peak memory, FLOPs utilisation.

Hope is attention-free, so its training memory should grow linearly with the sequence: twice the
tokens, at most 2.2x the memory. Each length runs in a fresh process (peak resident memory is a
per-process high-water mark): the memory figure is the peak during training steps minus the
resident memory just before the first one, so the interpreter, torch and the model weights are
left out. Model FLOPs utilisation is 3 x the compiler's forward FLOPs per token (forward plus a
backward of twice its cost) times tokens per second, over the float32 matmul peak measured on
this machine in the same run; the in-context levels' own inner gradients are extra work it does
not count.

    python benchmarks/bench_hope_scaling.py [--batch 2] [--steps 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from report import machine, write

LENGTHS = [512, 1024, 2048, 4096]


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def one_length(seq_len: int, batch: int, steps: int) -> dict:
    """Train Hope at one sequence length in this process; return its figures."""
    from nestgraph.runtime.program import load_program
    from nestgraph.runtime.train.data import load_corpus
    from nestgraph.runtime.train.step import build_state, resolve_device, train_step
    from nestgraph.testing import compile_build

    with tempfile.TemporaryDirectory() as tmp:
        program = load_program(compile_build(Path(tmp) / "hope", "hope", [
            f"train.seq_len={seq_len}", f"train.batch={batch}"]))
        plan = json.loads((Path(tmp) / "hope" / "plan.json").read_text())
    corpus = load_corpus(None, max_bytes=1_000_000)
    cfg, device = dict(program.train), resolve_device("cpu")
    state = build_state(program, cfg, device)
    before = resident_bytes()
    times = []
    for _ in range(steps + 1):  # the first step is a warm-up, not timed
        start = time.perf_counter()
        train_step(state, program, cfg, corpus, device)
        times.append(time.perf_counter() - start)
    seconds = sorted(times[1:])[len(times[1:]) // 2]
    return {"seq_len": seq_len, "batch": batch, "tokens_per_s": batch * seq_len / seconds,
            "peak_training_bytes": peak_bytes() - before,
            "forward_flops_per_token": plan["totals"]["flops_per_token"]}


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """Measured float32 matmul FLOP/s on this machine (best of `repeats`)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one length
    parser.add_argument("--out", default="benchmarks/results/hope_scaling.json")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_length(args.one, args.batch, args.steps)))
        return
    peak = matmul_peak()
    rows = []
    print(f"{'seq_len':>8} {'tok/s':>8} {'peak MiB':>9} {'x prev':>7} {'MFU':>7}", flush=True)
    for seq_len in LENGTHS:
        out = subprocess.run([sys.executable, __file__, "--one", str(seq_len), "--batch",
                              str(args.batch), "--steps", str(args.steps)],
                             check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        row["mfu"] = 3 * row["forward_flops_per_token"] * row["tokens_per_s"] / peak
        if rows:
            row["memory_ratio_to_previous"] = (row["peak_training_bytes"]
                                               / rows[-1]["peak_training_bytes"])
        rows.append(row)
        ratio = row.get("memory_ratio_to_previous")
        print(f"{seq_len:>8} {row['tokens_per_s']:>8.0f} "
              f"{row['peak_training_bytes'] / 2**20:>9.1f} "
              f"{'' if ratio is None else f'{ratio:.2f}x':>7} {row['mfu']:>7.2%}", flush=True)
    report = {"benchmark": "Hope (specs/hope.yaml) training steps at growing sequence length",
              "machine": machine(matmul_peak_flops_fp32=peak),
              "steps_timed": args.steps, "results": rows}
    write(args.out, report)


if __name__ == "__main__":
    main()
