"""Quality at equal size and equal data: Hope, Titans and the Transformer on Tiny Shakespeare.

Each model is trained from scratch for the same number of steps of the same batch shape (so the
same tokens), three seeds each, and scored by held-out bits per byte on the corpus's held-out
tail (the last 5%). Sizes are set by overrides so that every model is within 10% of Hope's
parameter count; the script checks this before training. No figure is targeted: the numbers are
reported as they come out.

    python benchmarks/bench_quality.py --data PATH/tinyshakespeare.txt [--steps 150] [--seeds 3]

The corpus is read from where it lies; it is not part of this repository.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from report import machine, write

MODELS = {  # label -> (shipped spec, overrides that bring it to Hope's size)
    "hope": ("hope", []),
    "titans": ("titans", ["model.layers=3"]),
    "transformer": ("transformer", ["model.dim=68", "model.layers=3"]),
}


def train_one(spec: str, overrides: list[str], data: str, steps: int, seed: int,
              out: Path) -> dict:
    from nestgraph.runtime.program import load_program
    from nestgraph.runtime.train.loop import train
    from nestgraph.runtime.train.progress import SilentReporter
    from nestgraph.runtime.train.runs import read_metrics
    from nestgraph.testing import compile_build

    build = compile_build(out / "build" / f"{spec}-{seed}", spec, [
        *overrides, f"train.seed={seed}", f"train.steps={steps}", f"data.source={data}",
        "train.eval_every=0", "train.eval_batches=16", "train.checkpoint_every=0"])
    program = load_program(build)
    params = json.loads((build / "plan.json").read_text())["totals"]["params"]
    start = time.perf_counter()
    result = train(program, dict(program.train), program.data, out=out / "runs",
                   reporter=SilentReporter())
    seconds = time.perf_counter() - start
    evals = [r["heldout_bpb"] for r in read_metrics(result.run_dir / "metrics.jsonl")
             if "heldout_bpb" in r]
    tokens = steps * program.train["batch"] * program.train["seq_len"]
    return {"seed": seed, "params": params, "tokens": tokens, "heldout_bpb": evals[-1],
            "heldout_bpb_at_start": evals[0], "train_seconds": seconds}


def sizes(data: str) -> dict[str, int]:
    from nestgraph.compiler import compile_spec
    from nestgraph.spec import read_document

    out = {}
    for label, (spec, overrides) in MODELS.items():
        doc, source = read_document(spec, [*overrides, f"data.source={data}"])
        out[label] = compile_spec(doc, source, stop_after="plan").plan["totals"]["params"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="path of tinyshakespeare.txt")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/quality.json")
    args = parser.parse_args()
    data = str(Path(args.data).resolve())
    params = sizes(data)
    for label, n in params.items():
        if abs(n / params["hope"] - 1) > 0.10:
            raise SystemExit(f"{label} has {n:,} weights, more than 10% from Hope's "
                             f"{params['hope']:,}: adjust MODELS")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (spec, overrides) in MODELS.items():
            runs = [train_one(spec, overrides, data, args.steps, seed, Path(tmp))
                    for seed in range(args.seeds)]
            bpb = [r["heldout_bpb"] for r in runs]
            rows[label] = {"spec": spec, "overrides": overrides, "params": params[label],
                           "mean_bpb": statistics.mean(bpb),
                           "std_bpb": statistics.stdev(bpb) if len(bpb) > 1 else 0.0,
                           "runs": runs}
            print(f"{label:>12} {params[label]:>9,} weights  held-out bpb "
                  f"{rows[label]['mean_bpb']:.3f} ± {rows[label]['std_bpb']:.3f} "
                  f"({', '.join(f'{b:.3f}' for b in bpb)})", flush=True)
    report = {"benchmark": "held-out bits per byte after equal training on Tiny Shakespeare",
              "data": Path(data).name, "steps": args.steps, "seeds": args.seeds,
              "machine": machine(),
              "results": rows}
    write(args.out, report)


if __name__ == "__main__":
    main()
