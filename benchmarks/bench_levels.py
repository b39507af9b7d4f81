"""What in-context levels cost: training-step time of CMS specs against the Transformer baseline.

Every configuration is measured in the same process, one after another, and reported as a ratio
to the baseline measured in this run, so the figures compare across machines.

    python benchmarks/bench_levels.py [--steps 10] [--out benchmarks/results/levels.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from nestgraph.runtime.program import load_program
from nestgraph.runtime.train.data import load_corpus
from nestgraph.runtime.train.step import build_state, resolve_device, train_step
from nestgraph.testing import compile_build

CONFIGS = {
    "transformer (baseline)": ("transformer", []),
    "cms, second-order meta-gradient": ("cms", []),
    "cms, first-order meta-gradient": ("cms", ["levels.cms_fast.meta=first_order",
                                               "levels.cms_mid.meta=first_order"]),
    "cms, fast level every 64 tokens": ("cms", ["levels.cms_fast.every=64 tokens"]),
    "hope (the reference spec)": ("hope", []),
    "hope-attention": ("hope-attention", []),
}


def time_steps(program, corpus, steps: int) -> list[float]:
    cfg = dict(program.train)
    device = resolve_device("cpu")
    state = build_state(program, cfg, device)
    train_step(state, program, cfg, corpus, device)  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step(state, program, cfg, corpus, device)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/levels.json")
    args = parser.parse_args()
    corpus = load_corpus(None, max_bytes=1_000_000)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (spec, overrides) in CONFIGS.items():
            program = load_program(compile_build(Path(tmp) / label.replace(" ", "_"), spec,
                                                 overrides))
            times = time_steps(program, corpus, args.steps)
            tokens = program.train["batch"] * program.train["seq_len"]
            results[label] = {"median_step_s": statistics.median(times),
                              "tokens_per_s": tokens / statistics.median(times)}
            print(f"{label:36s} {statistics.median(times) * 1e3:8.1f} ms/step", flush=True)
    base = results["transformer (baseline)"]["median_step_s"]
    for row in results.values():
        row["time_vs_baseline"] = row["median_step_s"] / base
    report = {"benchmark": "step time of in-context levels vs the Transformer baseline",
              "machine": {"cpu": platform.processor() or platform.machine(),
                          "threads": torch.get_num_threads(), "torch": torch.__version__},
              "steps": args.steps, "batch_x_seq": "8 x 256", "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
