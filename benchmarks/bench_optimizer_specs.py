"""The Transformer baseline trained by each optimizer spec (specs/optimizers/*.yaml), against
the same model trained by AdamW (specs/transformer.yaml), on the same data and steps.

    python benchmarks/bench_optimizer_specs.py --data PATH/tinyshakespeare.txt [--steps 100]

Reports held-out bits per byte at the end and training throughput as a ratio to the AdamW
run, measured in the same process one after another.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from report import machine, write

from nestgraph.runtime.program import load_program
from nestgraph.runtime.train.loop import train
from nestgraph.runtime.train.progress import SilentReporter
from nestgraph.spec import shipped_specs
from nestgraph.testing import compile_build


def run(spec: str, data: str, steps: int, folder: Path) -> dict:
    overrides = [f"train.steps={steps}", "train.eval_every=0", "train.eval_batches=8",
                 f"data.source={data}"]
    program = load_program(compile_build(folder / "build", spec, overrides))
    start = time.perf_counter()
    result = train(program, dict(program.train), program.data, out=folder / "runs",
                   reporter=SilentReporter())
    seconds = time.perf_counter() - start
    tokens = steps * program.train["batch"] * program.train["seq_len"]
    return {"heldout_bpb": result.heldout_bpb, "seconds": seconds, "tokens_per_s": tokens / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a text file (e.g. Tiny Shakespeare)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default="benchmarks/results/optimizer_specs.json")
    args = parser.parse_args()
    specs = ["transformer", *shipped_specs(folder="optimizers")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, spec in enumerate(specs):
            torch.manual_seed(0)
            results[spec] = run(spec, args.data, args.steps, Path(tmp) / str(i))
            print(f"{spec:28s} held-out {results[spec]['heldout_bpb']:.3f} bits/byte  "
                  f"{results[spec]['tokens_per_s']:,.0f} tok/s")
    base = results["transformer"]["tokens_per_s"]
    for row in results.values():
        row["throughput_vs_adamw"] = row["tokens_per_s"] / base
    write(args.out, {"steps": args.steps, "data": Path(args.data).name, "results": results,
                     "machine": machine()})


if __name__ == "__main__":
    main()
