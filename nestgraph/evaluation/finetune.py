"""Training a copy of a run for a few steps on given text, with the run's own step levels.

The loop is the training loop's own step (`runtime.train.train_step`: in-context levels learn
while reading, one backward, each step level fires at its period), on a fresh optimizer state:
a checkpoint keeps the run's optimizer state for resuming, but the phases here are new
training, whose learning-rate schedules run over their own number of steps.
"""

from __future__ import annotations

import hashlib

import torch

from nestgraph.evaluation.loaded import Loaded
from nestgraph.runtime.train.data import Corpus


class Trainer:
    """A forked run and its optimizers; `steps` runs on one text at a time."""

    def __init__(self, loaded: Loaded, total_steps: int) -> None:
        from nestgraph.runtime.train.step import TrainState, step_optimizers

        self.loaded = loaded.fork()
        self.cfg = dict(loaded.cfg, steps=max(total_steps, 1), device="cpu")
        model = self.loaded.model
        model.train()
        optimizers = step_optimizers(model, loaded.schedule)  # as training builds them
        self.state = TrainState(model, self.loaded.stream, optimizers)

    def steps(self, text: torch.Tensor, count: int) -> list[float]:
        """`count` training steps on random windows of `text` (1-D uint8); their losses."""
        from nestgraph.runtime.train.step import train_step

        corpus = Corpus(train=text, heldout=text[:2], source="eval", n_files=1,
                        sha256=hashlib.sha256(text.numpy().tobytes()).hexdigest())
        losses = []
        for _ in range(count):
            record = train_step(self.state, self.loaded.program, self.cfg, corpus,
                                torch.device("cpu"))
            losses.append(record["loss"])
        self.loaded.model.eval()
        return losses

    def result(self) -> Loaded:
        for p in self.loaded.model.parameters():
            p.grad = None
        self.loaded.model.eval()
        return self.loaded


def as_tensor(text: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(text), dtype=torch.uint8).clone()


def finetune(loaded: Loaded, text: bytes, steps: int) -> Loaded:
    """A copy of `loaded` trained `steps` steps on `text`."""
    trainer = Trainer(loaded, steps)
    trainer.steps(as_tensor(text), steps)
    return trainer.result()
