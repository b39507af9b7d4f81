"""A run loaded for evaluation: its model, schedule, stream, settings and held-out data."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nestgraph.runtime.levels import LevelDef
from nestgraph.runtime.stream import StreamState
from nestgraph.runtime.train.tokenizer import ByteTokens


@dataclass
class Loaded:
    """What every task reads. Tasks that train work on copies (`fork`), never on this."""

    model: torch.nn.Module
    schedule: tuple[LevelDef, ...]
    stream: StreamState
    cfg: dict  # the train section the run trained with
    data_cfg: dict
    program: object  # nestgraph.runtime.program.Program
    step: int = 0  # the checkpoint's step
    run: Path | None = None
    tokenizer: object = field(default_factory=ByteTokens)  # what the run's ids stand for

    @property
    def bytes_tokens(self) -> bool:
        """Whether every token is a byte (the tasks that build byte-level items need it)."""
        return isinstance(self.tokenizer, ByteTokens)

    @property
    def seq_len(self) -> int:
        return int(self.cfg["seq_len"])

    def fork(self) -> Loaded:
        """An independent copy: training it leaves this one as it was."""
        return Loaded(copy.deepcopy(self.model), self.schedule, copy.deepcopy(self.stream),
                      dict(self.cfg), dict(self.data_cfg), self.program, self.step, self.run,
                      self.tokenizer)


def load(run: Path, *, trust: bool = False) -> Loaded:
    """The run's latest checkpoint, as `nestgraph generate` loads it (`build.load_run`)."""
    from nestgraph.compiler.buildfolder import load_run
    from nestgraph.runtime.train import checkpoint as ckpt
    from nestgraph.runtime.train.tokenizer import run_tokenizer

    model, program, stream, cfg = load_run(run, trust=trust)
    meta = ckpt.read_meta(ckpt.latest_checkpoint(run))
    model.eval()
    data = dict(meta.get("data", program.data))
    return Loaded(model, program.schedule, stream, cfg, data, program,
                  int(meta.get("step", 0)), run, run_tokenizer(run, data.get("tokenizer")))


def heldout_corpus(loaded: Loaded):
    """The run's own corpus (train and held-out parts), read as training read it, in the ids
    of the run's tokenizer."""
    from nestgraph.compiler.buildfolder import spec_folder_of
    from nestgraph.runtime.train.data import load_corpus, resolve_source, tokenize_corpus

    data = loaded.data_cfg
    base = spec_folder_of(loaded.run) if loaded.run is not None else None
    source = None if data["source"] == "stdlib" else resolve_source(data["source"], base)
    corpus = load_corpus(source, heldout_fraction=data["heldout"], max_bytes=data["max_bytes"],
                         heldout_path=resolve_source(data.get("heldout_source"), base))
    return tokenize_corpus(corpus, lambda _train: loaded.tokenizer)
