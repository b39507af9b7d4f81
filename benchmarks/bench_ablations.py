"""Every ablation spec (specs/ablations/) beside the spec it ablates and the Transformer: held-out
bits per byte after the same small training budget, and training throughput.

Each model is trained from scratch at its shipped size for the same steps of the same batch
(the same tokens), one thread, and scored on the corpus's held-out tail. Throughput is tokens
per second of training (evaluations excluded as far as the loop allows: `train_seconds` covers
the whole run, so it is a lower bound), reported relative to the Transformer measured in the
same run. A single seed at a small budget: differences below a few hundredths of a bit are
within seed noise (bench_quality.py measures that spread).

    python benchmarks/bench_ablations.py --data PATH/tinyshakespeare.txt [--steps 40]
        [--only titans-mag ablations/titans-mag-persistent --out FILE]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench_quality import train_one
from report import machine, write

BASES = ("hope", "titans-mag", "titans")  # an ablation's name starts with its base's


def main() -> None:
    from nestgraph.spec import shipped_specs

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="path of tinyshakespeare.txt")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--only", nargs="+", metavar="SPEC",
                        help="these specs only (the Transformer is always trained beside them)")
    parser.add_argument("--out", default="benchmarks/results/ablations.json")
    args = parser.parse_args()
    specs = ["transformer", *(args.only or [*BASES, *sorted(shipped_specs(folder="ablations"))])]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            run = train_one(spec, ["train.threads=1"], args.data, args.steps, 0,
                            Path(tmp) / spec.replace("/", "-"))
            run["tokens_per_s"] = run["tokens"] / run["train_seconds"]
            results[spec] = run
            print(f"{spec:36s} {run['params']:>8,} params  bpb {run['heldout_bpb']:.3f}  "
                  f"{run['tokens_per_s']:,.0f} tok/s", flush=True)
    base_speed = results["transformer"]["tokens_per_s"]
    for spec, run in results.items():
        run["throughput_vs_transformer"] = run["tokens_per_s"] / base_speed
        name = spec.split("/")[-1]
        base = next((b for b in BASES if name.startswith(b + "-")), None)
        if spec.startswith("ablations/") and base in results:
            run["ablates"] = base
            run["bpb_minus_base"] = run["heldout_bpb"] - results[base]["heldout_bpb"]
    write(args.out, {"benchmark": "ablation specs: held-out bpb after equal training, and "
                                  "training throughput relative to the Transformer",
                     "data": Path(args.data).name, "steps": args.steps, "seed": 0,
                     "machine": machine(threads=1), "results": results})


if __name__ == "__main__":
    main()
