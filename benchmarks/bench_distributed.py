"""Data-parallel scaling: tokens/s of 1 process against 2 (or every GPU found), and the share
of a 2-process step spent communicating gradients.

Weak scaling: every process reads the same number of rows per step, so N processes read N
times the tokens of one. Efficiency is (tokens/s on N) / (N x tokens/s on 1). The communication
share compares the same N-process step with its gradient all-reduce switched off (DDP's
``no_sync``; the step computes the same, the ranks merely drift apart): 1 - t(no_sync) / t(DDP).
On a CPU each process has one thread (gloo); with GPUs, one process per GPU (nccl).

    python benchmarks/bench_distributed.py [--specs transformer hope] [--steps 8]
        [--out benchmarks/results/distributed.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from report import machine, write

ROWS = {"transformer": 8, "hope": 4}  # rows per process and step (seq_len: the spec's)


def worker(rank: int, world: int, init: str, build: str, rows: int, steps: int, sync: bool,
           out: str) -> None:
    import torch.distributed as dist

    from nestgraph.compiler.buildfolder import RESOLVED
    from nestgraph.compiler.train_config import train_config
    from nestgraph.runtime.program import load_program
    from nestgraph.runtime.train.data import load_corpus
    from nestgraph.runtime.train.distributed import average_stream
    from nestgraph.runtime.train.step import build_state, train_step

    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{init}",
                                rank=rank, world_size=world)
    program = load_program(Path(build))
    cfg, _ = train_config(program, [f"train.batch={rows * world}", "train.parallel=ddp",
                                    f"train.device={'cuda' if cuda else 'cpu'}"],
                          steps=1000, data=None, resolved=Path(build) / RESOLVED)
    corpus = load_corpus(None, max_bytes=1_000_000)
    state = build_state(program, cfg, device)
    times = []
    for i in range(steps + 2):  # two warm-up steps
        quiet = state.parallel.reader.no_sync() if world > 1 and not sync else nullcontext()
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with quiet:
            train_step(state, program, cfg, corpus, device)
        average_stream(state.stream)
        if cuda:
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(str(statistics.median(times)))


def step_time(build: Path, world: int, rows: int, steps: int, sync: bool, tmp: Path) -> float:
    import torch.multiprocessing as mp

    out, init = tmp / f"t-{world}-{sync}", tmp / f"init-{world}-{sync}-{time.time_ns()}"
    mp.spawn(worker, args=(world, str(init), str(build), rows, steps, sync, str(out)),
             nprocs=world, join=True)
    return float(out.read_text())


def main() -> None:
    from nestgraph.testing import compile_build

    parser = argparse.ArgumentParser()
    parser.add_argument("--specs", nargs="+", default=["transformer", "hope"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/distributed.json")
    args = parser.parse_args()
    world = torch.cuda.device_count() if torch.cuda.is_available() else 2
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for spec in args.specs:
            build = compile_build(tmp / spec, spec, [])
            rows = ROWS.get(spec, 4)
            seq_len = json.loads((build / "plan.json").read_text())["train"]["seq_len"]
            one = step_time(build, 1, rows, args.steps, True, tmp)
            many = step_time(build, world, rows, args.steps, True, tmp)
            local = step_time(build, world, rows, args.steps, False, tmp)
            tps1, tpsn = rows * seq_len / one, world * rows * seq_len / many
            results[spec] = {
                "rows_per_process": rows, "seq_len": seq_len, "processes": world,
                "s_per_step_1": one, "s_per_step_n": many, "s_per_step_n_no_sync": local,
                "tokens_per_s_1": tps1, "tokens_per_s_n": tpsn,
                "scaling_efficiency": tpsn / (world * tps1),
                "communication_share": max(0.0, 1 - local / many)}
            print(f"{spec}: {tps1:,.0f} tok/s on 1, {tpsn:,.0f} on {world} "
                  f"(efficiency {tpsn / (world * tps1):.2f}); communication "
                  f"{max(0.0, 1 - local / many):.1%} of a step", flush=True)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    write(args.out, {"machine": machine(backend=backend), "results": results})


if __name__ == "__main__":
    main()
