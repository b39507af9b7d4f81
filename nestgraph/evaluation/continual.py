"""The continual task: domains trained one after another, every domain scored after each.

Default domains: the Python standard library sources split by top-level package (the largest
few, each its own domain), then any text files the user names.
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

from nestgraph.errors import UsageProblem
from nestgraph.escape import printable
from nestgraph.evaluation import metrics
from nestgraph.evaluation.finetune import Trainer, as_tensor
from nestgraph.evaluation.loaded import Loaded
from nestgraph.evaluation.scoring import heldout_windows, windows_bpb

HELDOUT = 0.1  # the last tenth of each domain is its held-out part


@dataclass(frozen=True)
class Domain:
    name: str
    train: torch.Tensor
    heldout: torch.Tensor


def split_domain(name: str, raw: bytes) -> Domain:
    data = as_tensor(raw)
    cut = len(data) - max(int(len(data) * HELDOUT), 1)
    return Domain(name, data[:cut], data[cut:])


def stdlib_groups(root: Path | None = None) -> dict[str, list[Path]]:
    """The stdlib's .py files (as the built-in corpus reads them) by top-level package."""
    from nestgraph.runtime.train.sources import stdlib_files

    root = root or Path(sysconfig.get_paths()["stdlib"])
    groups: dict[str, list[Path]] = {}
    for file in stdlib_files(root):
        parts = file.relative_to(root).parts
        groups.setdefault(parts[0] if len(parts) > 1 else "(modules)", []).append(file)
    return groups


def stdlib_domains(count: int, max_bytes: int) -> list[Domain]:
    """The `count` largest stdlib packages, in name order, each cut to `max_bytes`."""
    sized = []
    for name, files in stdlib_groups().items():
        if name == "(modules)":
            continue  # loose modules are no one topic
        raw = b"\n".join(f.read_bytes() for f in files)
        sized.append((len(raw), name, raw[:max_bytes]))
    chosen = sorted(sized, reverse=True)[:count]
    return [split_domain(name, raw) for _, name, raw in sorted(chosen, key=lambda s: s[1])]


def file_domain(path: Path, max_bytes: int) -> Domain:
    try:
        raw = path.read_bytes()[:max_bytes]
    except OSError as err:
        raise UsageProblem(f"cannot read domain file '{printable(str(path))}': "
                           f"{err.strerror or err}", "name a readable text file") from None
    if len(raw) < 64:
        raise UsageProblem(f"domain file '{printable(str(path))}' has {len(raw)} bytes",
                           "a domain needs at least 64 bytes of text")
    return split_domain(path.name, raw)


def run(loaded: Loaded, *, domains: list[Domain], steps: int = 20, batches: int = 2,
        fresh: bool = False) -> dict:
    """Train phase k on domain k for `steps` steps; after each phase, held-out bpb of all.

    `fresh` starts from the run's initial weights (its seed) instead of its trained ones.
    """
    if len(domains) < 2:
        raise UsageProblem(f"the continual task needs at least 2 domains, got {len(domains)}",
                           "raise --stdlib-domains or add --domain FILE")
    start = _fresh(loaded) if fresh else loaded
    trainer = Trainer(start, steps * len(domains))
    seq_len, batch = loaded.seq_len, int(loaded.cfg["batch"])
    windows = [heldout_windows(d.heldout, seq_len=seq_len, batch=batch, batches=batches)
               for d in domains]
    for d in domains:
        if len(d.train) < seq_len + 1:
            raise UsageProblem(f"domain '{printable(d.name)}' has {len(d.train)} training "
                               f"bytes; train.seq_len {seq_len} needs at least {seq_len + 1}",
                               "give a longer file or raise --domain-bytes")

    def scores() -> list[float]:
        current = trainer.loaded
        return [windows_bpb(current, w) for w in windows]

    before = scores()
    matrix, train_loss = [], []
    for d in domains:
        losses = trainer.steps(d.train, steps)
        train_loss.append(sum(losses) / len(losses))
        matrix.append(scores())
    return {"domains": [d.name for d in domains], "before": before, "matrix": matrix,
            "phase_train_loss": train_loss, **metrics.summary(matrix, before),
            "units": "bits per byte"}


def _fresh(loaded: Loaded) -> Loaded:
    from nestgraph.runtime.engine import init_stream

    torch.manual_seed(loaded.cfg["seed"])
    model = loaded.program.build_model()
    if loaded.cfg["precision"] == "fp64":
        model = model.double()
    return Loaded(model, loaded.schedule, init_stream(model, loaded.schedule), loaded.cfg,
                  loaded.data_cfg, loaded.program, 0, loaded.run)
