"""`train.compile=on` against eager on this CPU: the training step of each spec both ways in one
process, interleaved rep by rep after a warm-up, CPU time (`time.process_time`).

torch.compile cannot differentiate twice, so a spec whose in-context levels are second order
(or truncated) is measured with them switched to ``meta: first_order`` in both runs, and says so.
The warm-up (two steps, the compilation included) is reported beside the step time.

    python benchmarks/bench_compile.py [--specs transformer titans hope] [--reps 3]
        [--out benchmarks/results/compile.json]
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

FIRST_ORDER = {"hope": ("cms_fast", "cms_mid", "cms_slow"), "cms": ("cms_fast", "cms_mid"),
               "hope-attention": ("cms_fast", "cms_mid", "cms_slow")}


def timed_bench(spec: str, mode: str, folder: Path, corpus) -> Bench:
    """The spec's trainer in one mode, after a warm-up of two steps (the compilation
    included), whose wall-clock time it keeps as ``warm_up_s``."""
    overrides = [f"levels.{lv}.meta=first_order" for lv in FIRST_ORDER.get(spec, ())]
    bench = Bench(f"{spec}-{mode}", spec, overrides, folder, corpus, warm_up=False,
                  compile=mode)
    start = time.perf_counter()
    bench.step()
    bench.step()
    bench.warm_up_s = time.perf_counter() - start
    return bench


def main() -> None:
    from nestgraph.runtime.train.data import load_corpus

    parser = argparse.ArgumentParser()
    parser.add_argument("--specs", nargs="+", default=["transformer", "titans", "hope"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/compile.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    corpus = load_corpus(None, max_bytes=1_000_000)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.specs:
            runs = {mode: timed_bench(spec, mode, Path(tmp), corpus) for mode in ("off", "on")}
            for _ in range(args.reps):
                for run in runs.values():
                    run.times.append(run.step())
            eager, compiled = (statistics.median(runs[m].times) for m in ("off", "on"))
            results[spec] = {"first_order_levels": list(FIRST_ORDER.get(spec, ())),
                             "eager_s_per_step": eager, "compiled_s_per_step": compiled,
                             "speed_up": eager / compiled,
                             "compiled_warm_up_s": runs["on"].warm_up_s}
            print(f"{spec:12s} eager {eager:.3f} s  compiled {compiled:.3f} s  "
                  f"{eager / compiled:.2f}x  (warm-up {runs['on'].warm_up_s:.0f} s)", flush=True)
    write(args.out, {"benchmark": "train.compile=on vs eager on a CPU", "reps": args.reps,
                     "machine": machine(threads=1), "batch_x_seq": "8 x 256",
                     "results": results})


if __name__ == "__main__":
    main()
