"""`nestgraph train --dry-run`: what each rank of a job would do, read from the build's
plan.json and the run's settings; nothing is trained and no process is started."""

from __future__ import annotations

import json
from pathlib import Path


def describe(build: Path, cfg: dict, world: int) -> list[str]:
    """The job's lines: ranks and their rows, then each level and what crosses ranks when."""
    plan = json.loads((build / "plan.json").read_text(encoding="utf-8"))
    from nestgraph.runtime.train.parallel import resolve_kind

    kind = resolve_kind(cfg.get("parallel", "auto"), world)
    batch, seq_len = cfg["batch"], cfg["seq_len"]
    lines = [f"{plan['name']}: {cfg['steps']} steps of a global batch of {batch} x {seq_len} "
             f"tokens over {world} process(es), parallel: {kind}"]
    if batch % world:
        lines.append(f"  refused: train.batch={batch} does not split over {world} processes")
        return lines
    per = batch // world
    for rank in range(world):
        lines.append(f"  rank {rank}: rows {rank * per}..{(rank + 1) * per - 1} of every "
                     f"batch ({per} x {seq_len} tokens a step), the batch drawn from "
                     f"(seed {cfg['seed']}, step)")
    lines.append("levels:")
    lines += [f"  {lv['name']} ({lv['kind']}, every {lv['every']}, {lv['lifetime']}): "
              f"{_crossing(lv, kind, seq_len)}" for lv in plan["levels"]]
    writes = ("every rank writes its shard (torch.distributed.checkpoint)" if kind == "fsdp"
              else "rank 0 writes them")
    lines.append(f"checkpoints: every {cfg['checkpoint_every'] or 'run end'} step(s); {writes}")
    return lines


def _crossing(lv: dict, kind: str, seq_len: int) -> str:
    if kind == "none":
        return "one process: nothing is communicated"
    reduce = "reduce-scattered (FSDP2)" if kind == "fsdp" else "all-reduced (DDP)"
    if lv["kind"] == "step":
        when = ("every step" if lv["period"] == 1 else
                f"in the backward of every {lv['period']}th step (and before a checkpoint); "
                "accumulated locally (no_sync) in between")
        return f"its gradients {reduce}, {when}"
    if lv["kind"] == "optimizer":
        return ("runs on the reduced gradients, the same on every rank: its state is never "
                "communicated")
    if lv["kind"] == "in_context" and lv["lifetime"] == "stream":
        fires = (f"once every {lv['tokens'] / seq_len:g} steps" if lv["tokens"] >= seq_len
                 else f"{seq_len / lv['tokens']:g} times a step")
        return (f"its signal averaged over the ranks each time it fires ({fires}), "
                "the pending signal at each step's end: the same stream weights on every rank")
    return ("per sequence, on the rank that reads it (never communicated); its meta-gradient "
            "reaches the outer level through the gradient reduction")
