"""One short GPU run (under 8 minutes): tok/s and MFU of the Transformer and Hope at width 512
and 1024, bf16 autocast, with and without torch.compile.

Hope's CMS levels are second order by default, which torch.compile cannot differentiate twice;
its compiled rows use ``meta: first_order`` on them (and say so). MFU is against the measured
bf16 matmul peak of the same GPU, with the convention of `bench_mfu.py` (3 x the cost model's
forward FLOPs per token). Steps are wall-clock after ``torch.cuda.synchronize``.

    python benchmarks/gpu_check.py [--steps 5] [--out benchmarks/results/gpu_check.json]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_mfu import forward_flops_per_token
from report import machine, write

FIRST_ORDER = [f"levels.{lv}.meta=first_order" for lv in ("cms_fast", "cms_mid", "cms_slow")]


def peak_bf16(size: int = 8192, reps: int = 10) -> float:
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    torch.mm(a, b)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    torch.cuda.synchronize()
    return 2 * size**3 * reps / (time.perf_counter() - start)


def run(spec: str, overrides: list[str], compiled: bool, steps: int, folder: Path, corpus,
        peak: float) -> dict:
    from nestgraph.runtime.program import load_program
    from nestgraph.runtime.train.step import build_state, train_step
    from nestgraph.testing import compile_build

    program = load_program(compile_build(folder, spec, overrides))
    cfg = dict(program.train, precision="bf16", compile="on" if compiled else "off")
    device = torch.device("cuda")
    state = build_state(program, cfg, device)
    for _ in range(2):  # warm-up (and compilation)
        train_step(state, program, cfg, corpus, device)
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        train_step(state, program, cfg, corpus, device)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    step = statistics.median(times)
    tokens = cfg["batch"] * cfg["seq_len"]
    flops = 3 * forward_flops_per_token(spec, overrides) * tokens
    return {"s_per_step": step, "tokens_per_s": tokens / step, "mfu_bf16": flops / step / peak}


def main() -> None:
    from nestgraph.runtime.train.data import load_corpus

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/gpu_check.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA device")
    peak = peak_bf16()
    corpus = load_corpus(None, max_bytes=1_000_000)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for width in (512, 1024):
            for spec in ("transformer", "hope"):
                for compiled in (False, True):
                    over = [f"model.dim={width}"]
                    if compiled and spec == "hope":
                        over += FIRST_ORDER
                    label = f"{spec} width {width} bf16" + (" compiled" if compiled else "")
                    if compiled and spec == "hope":
                        label += " (CMS first order)"
                    folder = Path(tmp) / label.replace(" ", "_").replace("(", "").replace(")", "")
                    results[label] = run(spec, over, compiled, args.steps, folder, corpus, peak)
                    print(label, results[label], flush=True)
    write(args.out, {"benchmark": "GPU tok/s and MFU, bf16, eager and compiled",
                     "machine": machine(gpu=torch.cuda.get_device_name()),
                     "matmul_peak_bf16_flops": peak, "results": results})


if __name__ == "__main__":
    main()
