"""Second-order, truncated and first-order meta-gradients for the in-context levels, on the
same runs.

An in-context level's update is a function of the outer weights; with ``meta: second_order``
the outer gradient flows through that update (a gradient of a gradient), with ``truncated``
it flows through it only inside the level's own modules (the error reaching their outputs held
fixed), with ``first_order`` the inner gradient is treated as a constant (NL §7; MAML's
first-order approximation). Each seed trains the shipped spec every way from the same initial weights and the same batches,
and the held-out bits per byte and the CPU time per step (the spec's compile included, under
1% of a run) are reported side by side, so the figures compare within one run.

    python benchmarks/bench_meta_gradient.py [--spec hope] [--steps 120] [--seeds 2]
        [--data PATH] [--out benchmarks/results/meta_gradient.json]

The default data is the embedded corpus (the main job's); pass --data for another.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from report import machine, write

# The spec's in-context levels (memory levels are second order by construction).
IN_CONTEXT = {"hope": ("cms_fast", "cms_mid", "cms_slow"), "cms": ("cms_fast", "cms_mid"),
              "hope-attention": ("cms_fast", "cms_mid", "cms_slow")}


def train_one(spec: str, mode: str, seed: int, steps: int, data: str | None, out: Path) -> dict:
    from nestgraph.testing import train_records

    overrides = [f"levels.{lv}.meta={mode}" for lv in IN_CONTEXT[spec]]
    overrides += [f"train.seed={seed}", f"train.eval_every={steps}", "train.eval_batches=16",
                  "train.checkpoint_every=0", "train.threads=1"]
    if data:
        overrides.append(f"data.source={data}")
    start = time.process_time()
    records = train_records(out / f"{spec}-{mode}-{seed}", spec, overrides, steps)
    cpu = time.process_time() - start
    evals = [r["heldout_bpb"] for r in records if "heldout_bpb" in r]
    return {"seed": seed, "heldout_bpb": evals[-1], "cpu_s_per_step": cpu / steps}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", default="hope", choices=sorted(IN_CONTEXT))
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", default="benchmarks/results/meta_gradient.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = str(Path(args.data).resolve()) if args.data else None
    rows: dict[str, list[dict]] = {"second_order": [], "truncated": [], "first_order": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):  # interleaved: every mode per seed before the next
            for mode in rows:
                rows[mode].append(train_one(args.spec, mode, seed, args.steps, data, Path(tmp)))
                print(mode, rows[mode][-1], flush=True)
    summary = {}
    for mode, runs in rows.items():
        bpb = [r["heldout_bpb"] for r in runs]
        summary[mode] = {"heldout_bpb_mean": statistics.mean(bpb),
                         "heldout_bpb_sd": statistics.stdev(bpb) if len(bpb) > 1 else 0.0,
                         "cpu_s_per_step": statistics.mean(r["cpu_s_per_step"] for r in runs)}
    second = rows["second_order"]
    paired = {mode: [r["heldout_bpb"] - s["heldout_bpb"]
                     for r, s in zip(rows[mode], second, strict=True)]
              for mode in ("truncated", "first_order")}
    report = {"benchmark": f"{args.spec}: second-order, truncated and first-order "
                           "meta-gradients of the in-context levels", "machine": machine(),
              "steps": args.steps,
              "data": "embedded corpus" if data is None else Path(data).name,
              "runs": rows, "summary": summary,
              "minus_second_order_bpb_paired": paired,
              "speed_up_over_second_order": {
                  mode: summary["second_order"]["cpu_s_per_step"]
                  / summary[mode]["cpu_s_per_step"] for mode in paired}}
    write(args.out, report)
    print(json.dumps(report["summary"], indent=2))
    for mode, diffs in paired.items():
        print(f"{mode} - second order, held-out bpb per seed: {[round(d, 4) for d in diffs]}; "
              f"{report['speed_up_over_second_order'][mode]:.2f}x faster per step")

if __name__ == "__main__":
    main()
