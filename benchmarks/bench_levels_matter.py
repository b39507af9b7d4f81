"""Do the levels matter? Transformer, Titans, Hope and Hope-Attention at equal size and tokens.

For each corpus, model and seed: train from scratch (the same steps of the same batch shape, so
the same tokens; sizes within 10% of Hope's, checked before training), then score the run with
`nestgraph eval`'s own task functions:

* (a) held-out bits per byte at the end of training;
* (b) the continual stream: two standard-library packages and Tiny Shakespeare trained one after
  the other from the trained weights, every domain scored after each phase (BWT, forgetting);
* (c) recall (MQAR, one needle, four keyed needles) at 1x and 4x the training length, after a
  short fine-tune on the probes' format, the longer contexts read in windows with all state
  carried;
* (d) the levels table: held-out bpb with each level that learns in context switched off.

    python benchmarks/bench_levels_matter.py --shakespeare PATH/tinyshakespeare.txt \
        [--steps 60] [--seeds 3] [--corpus stdlib|shakespeare|both]

Nothing is tuned towards a result; the figures are written as they come out
(`benchmarks/results/levels_matter.json`). The corpus is read from where it lies.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from report import machine, write

MODELS = {  # label -> (shipped spec, overrides that bring it within 10% of Hope's size)
    "transformer": ("transformer", ["model.dim=68", "model.layers=3"]),
    "titans": ("titans", ["model.layers=3"]),
    "hope": ("hope", []),
    "hope-attention": ("hope-attention", ["model.dim=72"]),
}


def sizes() -> dict[str, int]:
    from nestgraph.compiler import compile_spec
    from nestgraph.spec import read_document

    out = {}
    for label, (spec, overrides) in MODELS.items():
        doc, source = read_document(spec, overrides)
        out[label] = compile_spec(doc, source, stop_after="plan").plan["totals"]["params"]
    return out


def train_run(spec: str, overrides: list[str], data: str, steps: int, seed: int,
              out: Path) -> tuple[Path, float, float]:
    from nestgraph.runtime.program import load_program
    from nestgraph.runtime.train.loop import train
    from nestgraph.runtime.train.progress import SilentReporter
    from nestgraph.testing import compile_build

    build = compile_build(out / "build" / f"{spec}-{seed}", spec, [
        *overrides, f"train.seed={seed}", f"train.steps={steps}", f"data.source={data}",
        "train.eval_every=0", "train.eval_batches=8", "train.checkpoint_every=0",
        "train.threads=1"])
    program = load_program(build)
    start = time.perf_counter()
    result = train(program, dict(program.train), program.data, out=out / "runs",
                   reporter=SilentReporter())
    return result.run_dir, result.heldout_bpb, time.perf_counter() - start


def score(run: Path, shakespeare: str, phase_steps: int, samples: int, finetune: int) -> dict:
    from nestgraph.evaluation import continual, levels, recall
    from nestgraph.evaluation.loaded import load

    loaded = load(run)
    domains = continual.stdlib_domains(2, 100_000) + \
        [continual.file_domain(Path(shakespeare), 100_000)]
    stream = continual.run(loaded, domains=domains, steps=phase_steps, batches=2)
    rec = recall.run(loaded, lengths=(1.0, 4.0), samples=samples, finetune_steps=finetune)
    table = levels.run(loaded, batches=2)
    by_length: dict[str, list[float]] = {}
    for row in rec["rows"]:
        if row["accuracy"] is not None:
            by_length.setdefault(f"{row['multiple']:g}x", []).append(row["accuracy"])
    return {"continual": {k: stream[k] for k in ("domains", "matrix", "bwt", "forgetting",
                                                 "average_final")},
            "recall": {k: statistics.mean(v) for k, v in by_length.items()},
            "recall_rows": rec["rows"],
            "levels": [{k: r[k] for k in ("ablation", "level", "bpb", "delta", "flagged")}
                       for r in table["rows"]]}


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.mean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}


def summarise(runs: list[dict]) -> dict:
    out = {"heldout_bpb": mean_std([r["heldout_bpb"] for r in runs]),
           "bwt": mean_std([r["continual"]["bwt"] for r in runs]),
           "forgetting": mean_std([r["continual"]["forgetting"] for r in runs])}
    for length in runs[0]["recall"]:
        out[f"recall_{length}"] = mean_std([r["recall"][length] for r in runs])
    deltas: dict[str, list[float]] = {}
    for r in runs:
        for row in r["levels"]:
            if row["ablation"] != "none":
                deltas.setdefault(f"{row['ablation']} {row['level']}", []).append(row["delta"])
    out["levels_delta_bpb"] = {k: mean_std(v) for k, v in deltas.items()}
    return out


def line(label: str, s: dict) -> str:
    def f(key: str, digits: int = 3) -> str:
        return f"{s[key]['mean']:.{digits}f} ± {s[key]['std']:.{digits}f}" if key in s else "-"
    return (f"{label:>15}  bpb {f('heldout_bpb')}  BWT {f('bwt')}  forgetting "
            f"{f('forgetting')}  recall 1x {f('recall_1x', 2)}  4x {f('recall_4x', 2)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shakespeare", required=True, help="path of tinyshakespeare.txt")
    parser.add_argument("--corpus", choices=["stdlib", "shakespeare", "both"], default="both")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--phase-steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--recall-finetune", type=int, default=20,
                        help="steps on the recall probes' format before they are scored")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", default="benchmarks/results/levels_matter.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    shakespeare = str(Path(args.shakespeare).resolve())
    params = sizes()
    for label, n in params.items():
        if abs(n / params["hope"] - 1) > 0.10:
            raise SystemExit(f"{label} has {n:,} weights, more than 10% from Hope's "
                             f"{params['hope']:,}: adjust MODELS")
    corpora = {"stdlib": "stdlib", "shakespeare": shakespeare}
    if args.corpus != "both":
        corpora = {args.corpus: corpora[args.corpus]}
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for corpus, data in corpora.items():
            results[corpus] = {}
            for label in args.models.split(","):
                spec, overrides = MODELS[label]
                runs = []
                for seed in range(args.seeds):
                    run, bpb, seconds = train_run(spec, overrides, data, args.steps, seed,
                                                  Path(tmp) / corpus / label)
                    tick = time.perf_counter()
                    runs.append({"seed": seed, "heldout_bpb": bpb, "train_seconds": seconds,
                                 **score(run, shakespeare, args.phase_steps, args.samples,
                                          args.recall_finetune),
                                 "score_seconds": time.perf_counter() - tick})
                results[corpus][label] = {"spec": spec, "overrides": overrides,
                                          "params": params[label], "runs": runs,
                                          "summary": summarise(runs)}
                print(f"[{corpus}] " + line(label, results[corpus][label]["summary"]),
                      flush=True)
    write(args.out, {"benchmark": "levels that matter: equal size, equal tokens",
                     "steps": args.steps, "phase_steps": args.phase_steps,
                     "seeds": args.seeds, "samples": args.samples,
                     "recall_finetune": args.recall_finetune, "machine": machine(),
                     "results": results})


if __name__ == "__main__":
    main()
