"""The deep optimizers against SGD-momentum, AdamW and Muon on three small problems (NL §4).

    python benchmarks/bench_optimizers.py [--out benchmarks/results/optimizers.json]

1. The paper's toy psi(r, theta) = r^2 + k (r - theta + alpha sin(omega r))^2 from (-3.5, 2),
   over a sweep of k, alpha, omega (the paper gives none of them): steps until psi < 1e-3
   and psi after 400 steps.
2. Continual regression on orthogonal subspaces (NL Eq. 45): four tasks, each a linear
   regression whose inputs span their own 8 of 32 dimensions, trained one after another;
   the old tasks' loss after the last one is what a momentum that forgets hurts.
3. A small classifier: a Gaussian mixture of 10 classes in 32 dimensions, an MLP 32-64-10,
   300 steps: final loss, held-out accuracy, and seconds per step as a ratio to AdamW
   measured in the same run.

Every optimizer gets the same learning-rate grid and its best value is reported (best by
the task's own figure), so no one is tuned more than another. The numbers are reported as
they come out, including where the deep optimizers lose.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
from report import machine, write
from torch import nn

from nestgraph.optim import DMGD, M3, DeepGain, DeltaGD, DeltaMomentum, MemoryMomentum, Muon
from nestgraph.optim import PreconditionedMomentum as Preconditioned

LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)

OPTIMIZERS: dict[str, Callable] = {
    "sgd_momentum": lambda ps, lr: MemoryMomentum(ps, lr=lr, beta=0.9),
    "adamw": lambda ps, lr: torch.optim.AdamW(ps, lr=lr, weight_decay=0.0),
    "muon": lambda ps, lr: Muon(ps, lr=lr),
    "delta_momentum": lambda ps, lr: DeltaMomentum(ps, lr=lr, beta=0.9, delta_strength=0.5),
    "preconditioned": lambda ps, lr: Preconditioned(ps, lr=lr),
    "dmgd": lambda ps, lr: DMGD(ps, lr=lr),  # momentum a residual MLP memory (alpha 0.9)
    "deep_gain": lambda ps, lr: DeepGain(ps, lr=lr),  # the element-wise gain curve
    "m3": lambda ps, lr: M3(ps, lr=lr, slow_every=10),
    "m3_ema": lambda ps, lr: M3(ps, lr=lr, slow_every=10, mode="ema"),
}


# --------------------------------------------------------------------------------- 1. psi


def psi(p: torch.Tensor, k: float, alpha: float, omega: float) -> torch.Tensor:
    r, theta = p[0, 0], p[0, 1]
    return r ** 2 + k * (r - theta + alpha * torch.sin(omega * r)) ** 2


def run_psi(name: str, lr: float, k: float, alpha: float, omega: float,
            steps: int = 400) -> tuple[int | None, float]:
    p = nn.Parameter(torch.tensor([[-3.5, 2.0]], dtype=torch.float64))
    opt = OPTIMIZERS[name]([p], lr)
    reached = None
    for step in range(1, steps + 1):
        opt.zero_grad()
        value = psi(p, k, alpha, omega)
        value.backward()
        opt.step()
        now = float(psi(p.detach(), k, alpha, omega))
        if not math.isfinite(now):
            return None, float("inf")
        if reached is None and now < 1e-3:
            reached = step
    return reached, now


def bench_psi() -> dict:
    configs = [(k, a, w) for k in (1.0, 10.0) for a in (0.5, 1.0) for w in (1.0, 4.0)]
    out = {}
    for name in OPTIMIZERS:
        rows = []
        for k, a, w in configs:
            tries = [(lr, *run_psi(name, lr, k, a, w)) for lr in LRS]
            # best: fewest steps to the tolerance, else lowest final value
            lr, reached, final = min(tries, key=lambda t: (t[1] is None, t[1] or 0, t[2]))
            rows.append({"k": k, "alpha": a, "omega": w, "lr": lr, "steps_to_1e-3": reached,
                         "final_psi": final})
        solved = [r["steps_to_1e-3"] for r in rows if r["steps_to_1e-3"] is not None]
        out[name] = {"configs": rows, "solved": len(solved), "of": len(rows),
                     "median_steps_when_solved": statistics.median(solved) if solved else None}
        print(f"psi  {name:15s} solved {len(solved)}/{len(rows)}  median steps "
              f"{out[name]['median_steps_when_solved']}")
    return out


# --------------------------------------------------------------------- 2. continual regression


def regression_tasks(dim: int = 32, tasks: int = 4, n: int = 256, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(dim, dim, generator=gen))[0]
    target = torch.randn(1, dim, generator=gen)
    per = dim // tasks
    out = []
    for t in range(tasks):
        sub = basis[:, t * per:(t + 1) * per]
        x = torch.randn(n, per, generator=gen) @ sub.T
        out.append((x, x @ target.T))
    return out


def run_continual(name: str, lr: float, steps_per_task: int = 100) -> dict:
    torch.manual_seed(0)
    model = nn.Linear(32, 1, bias=False)
    tasks = regression_tasks()
    opt = (DeltaGD([model], lr=lr) if name == "delta_gd"
           else OPTIMIZERS[name](model.parameters(), lr))
    for x, y in tasks:
        for _ in range(steps_per_task):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    with torch.no_grad():
        losses = [float(nn.functional.mse_loss(model(x), y)) for x, y in tasks]
    old = statistics.mean(losses[:-1])
    return {"lr": lr, "old_task_loss": old if math.isfinite(old) else float("inf"),
            "new_task_loss": losses[-1], "all_tasks": losses}


def bench_continual() -> dict:
    out = {}
    for name in [*OPTIMIZERS, "delta_gd"]:
        tries = [run_continual(name, lr) for lr in LRS]
        best = min(tries, key=lambda r: r["old_task_loss"] + r["new_task_loss"])
        out[name] = best
        print(f"cont {name:15s} old-task {best['old_task_loss']:.4g}  new-task "
              f"{best['new_task_loss']:.4g}  (lr {best['lr']})")
    return out


# -------------------------------------------------------------------------- 3. classifier


def mixture(n: int, seed: int, centers: torch.Tensor):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, centers.shape[0], (n,), generator=gen)
    return centers[y] + 1.5 * torch.randn(n, centers.shape[1], generator=gen), y


def run_classifier(name: str, lr: float, steps: int = 300) -> dict:
    centers = torch.randn(10, 32, generator=torch.Generator().manual_seed(42))
    x_train, y_train = mixture(4096, 1, centers)
    x_test, y_test = mixture(1024, 2, centers)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 10))
    layers = [m for m in model if isinstance(m, nn.Linear)]
    opt = (DeltaGD(layers, lr=lr) if name == "delta_gd"
           else OPTIMIZERS[name](model.parameters(), lr))
    gen = torch.Generator().manual_seed(3)
    times, loss = [], float("nan")
    for _ in range(steps):
        idx = torch.randint(0, x_train.shape[0], (64,), generator=gen)
        opt.zero_grad()
        out = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
        out.backward()
        start = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - start)
        loss = out.item()
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(-1) == y_test).float().mean())
    return {"lr": lr, "final_loss": loss if math.isfinite(loss) else float("inf"),
            "test_accuracy": accuracy, "optimizer_step_s": statistics.median(times)}


def bench_classifier() -> dict:
    out = {}
    for name in [*OPTIMIZERS, "delta_gd"]:
        tries = [run_classifier(name, lr) for lr in LRS]
        out[name] = max(tries, key=lambda r: (r["test_accuracy"], -r["final_loss"]))
    base = out["adamw"]["optimizer_step_s"]
    for name, row in out.items():
        row["step_time_vs_adamw"] = row["optimizer_step_s"] / base
        print(f"clf  {name:15s} acc {row['test_accuracy']:.3f}  loss {row['final_loss']:.3f}  "
              f"step {row['step_time_vs_adamw']:.2f}x AdamW  (lr {row['lr']})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/optimizers.json")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny problems: one thread times the optimizer, not the pool
    report = {"psi": bench_psi(), "continual_regression": bench_continual(),
              "classifier": bench_classifier(), "learning_rates_tried": list(LRS)}
    report["machine"] = machine()
    write(args.out, report)


if __name__ == "__main__":
    main()
