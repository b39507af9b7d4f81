"""The recall task: MQAR associative recall and needle-in-a-haystack, by context length."""

from __future__ import annotations

from nestgraph.evaluation import generators as gen
from nestgraph.evaluation.finetune import finetune
from nestgraph.evaluation.loaded import Loaded
from nestgraph.evaluation.scoring import accuracy

# name -> generator of one item of a given length and seed
PROBES = {
    "mqar": lambda length, seed: gen.mqar(length, seed=seed),
    "needle": lambda length, seed: gen.needle(length, keys=1, seed=seed),
    "multikey": lambda length, seed: gen.needle(length, keys=4, seed=seed),
}


def run(loaded: Loaded, *, lengths: tuple[float, ...] = (1.0, 2.0, 4.0), samples: int = 8,
        seed: int = 0, finetune_steps: int = 0) -> dict:
    """Accuracy of each probe at each context length (multiples of the training length).

    A row read in several windows (``carry`` true) also has ``accuracy_without_carry``: the
    same examples with every window read afresh. A probe whose format does not fit a length (a passkey question in 33 bytes) gets a row
    with ``accuracy`` None and the reason in ``skipped``.

    With `finetune_steps`, a copy of the model first trains that many steps on the probes'
    format at the training length (other seeds than the scored items).
    """
    if finetune_steps:
        loaded = finetune(loaded, _format_text(loaded.seq_len + 1, seed + 1_000_003),
                          finetune_steps)
    rows = []
    for multiple in lengths:
        length = max(int(round(multiple * loaded.seq_len)), 2) + 1  # + 1: the last target
        for name, make in PROBES.items():
            row = {"probe": name, "multiple": multiple, "length": length}
            try:
                items = [make(length, seed * 7919 + k) for k in range(samples)]
            except ValueError as err:  # the probe's format does not fit this length
                rows.append({**row, "skipped": str(err), "accuracy": None, "correct": 0,
                             "answers": 0, "carry": False})
                continue
            scored = accuracy(loaded, items)
            if scored["carry"]:  # what carrying the state across windows is worth
                scored["accuracy_without_carry"] = accuracy(loaded, items,
                                                            carry=False)["accuracy"]
            rows.append({**row, **scored})
    return {"rows": rows, "finetuned_steps": finetune_steps}


def _format_text(length: int, seed: int, count: int = 64) -> bytes:
    """Items of every probe, one after the other: what fine-tuning reads."""
    parts = [make(length, seed + k).text for k in range(count) for make in PROBES.values()]
    return b"\n".join(parts)
