"""What levels cost: every shipped spec's training step against the Transformer's, with the
number of aten operator calls per step beside it.

Each spec is measured at its shipped size and (the main specs) at width 256, in one process,
interleaved rep by rep (one step of every configuration, then the next rep), as CPU time per
step (`time.process_time`, so the figures hold when the machine is busy), and reported as a
ratio to the Transformer at the same width measured in the same run. Operator calls come from
one profiled step (`torch.profiler`, aten::* events): the dispatch cost of many small ops is
what separates an in-context level's step from a Transformer's.

    python benchmarks/bench_levels.py [--reps 3] [--threads 1] [--no-wide]
        [--out benchmarks/results/levels.json]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from report import machine, write

MAIN = ("transformer", "cms", "titans", "titans-mag", "titans-mal", "titans-mac", "hope",
        "hope-attention", "ablations/hope-cms-step-sizes")
OPTIMIZERS = ("optimizers/adam", "optimizers/momentum", "optimizers/delta-momentum",
              "optimizers/dmgd", "optimizers/deep-gain", "optimizers/m3", "optimizers/muon")


def configs(wide: bool) -> dict[str, tuple[str, list[str]]]:
    out = {f"{spec} (shipped size)": (spec, []) for spec in (*MAIN, *OPTIMIZERS)}
    if wide:
        out.update({f"{spec} (width 256)": (spec, ["model.dim=256"]) for spec in MAIN})
    return out


class Bench:
    """One configuration: its program, trainer state and the CPU time of each timed step.

    ``cfg`` replaces train settings after compiling (e.g. ``compile="on"``); ``warm_up``
    takes one untimed step at once. The record of the last step is kept (its loss, its update
    counts)."""

    def __init__(self, label: str, spec: str, overrides: list[str], folder: Path, corpus,
                 warm_up: bool = True, **cfg) -> None:
        from nestgraph.runtime.program import load_program
        from nestgraph.runtime.train.step import build_state, resolve_device
        from nestgraph.testing import compile_build

        self.build = compile_build(folder / label.replace(" ", "_").replace("/", "-"), spec,
                                   overrides)
        self.label, self.spec = label, spec
        self.program = load_program(self.build)
        self.cfg = dict(self.program.train, **cfg)
        self.device = resolve_device("cpu")
        self.state = build_state(self.program, self.cfg, self.device)
        self.corpus = corpus
        self.params = sum(p.numel() for p in self.state.model.parameters())
        self.times: list[float] = []
        self.record: dict = {}
        if warm_up:
            self.step()

    def step(self) -> float:
        from nestgraph.runtime.train.step import train_step

        start = time.process_time()
        self.record = train_step(self.state, self.program, self.cfg, self.corpus, self.device)
        return time.process_time() - start

    def op_calls(self) -> int:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            self.step()
        return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def main() -> None:
    from nestgraph.runtime.train.data import load_corpus

    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-wide", action="store_true", help="skip the width-256 configs")
    parser.add_argument("--out", default="benchmarks/results/levels.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = load_corpus(None, max_bytes=1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        benches = [Bench(label, spec, overrides, Path(tmp), corpus)
                   for label, (spec, overrides) in configs(not args.no_wide).items()]
        for rep in range(args.reps):  # interleaved: every configuration once per rep
            for bench in benches:
                bench.times.append(bench.step())
            print(f"rep {rep + 1}/{args.reps} done", flush=True)
        ops = {bench.label: bench.op_calls() for bench in benches}
    results = {}
    for bench in benches:
        base = next(b for b in benches if b.spec == "transformer"
                    and b.label.endswith(bench.label[bench.label.index("("):]))
        step = statistics.median(bench.times)
        results[bench.label] = {
            "params": bench.params, "cpu_s_per_step": step,
            "time_vs_transformer": step / statistics.median(base.times),
            "aten_calls_per_step": ops[bench.label],
            "tokens_per_cpu_s": bench.cfg["batch"] * bench.cfg["seq_len"] / step}
        row = results[bench.label]
        print(f"{bench.label:42s} {row['params']:>9,} params {step * 1e3:9.1f} ms "
              f"{row['time_vs_transformer']:6.2f}x {row['aten_calls_per_step']:>9,} aten calls")
    write(args.out, {"benchmark": "training-step CPU time of every shipped spec vs the "
                                  "Transformer at the same width, and aten calls per step",
                     "machine": machine(threads=args.threads), "reps": args.reps,
                     "batch_x_seq": "8 x 256", "results": results})


if __name__ == "__main__":
    main()
