"""The levels task: what each level that learns in context contributes to held-out loss."""

from __future__ import annotations

from nestgraph.evaluation.loaded import Loaded, heldout_corpus
from nestgraph.evaluation.scoring import heldout_windows, position_bpb, windows_bpb

THRESHOLD = 1e-4  # bits per byte: an ablation that changes less than this is flagged


def ablatable(schedule) -> list:
    """Levels that learn while reading: in-context, memory, and stream-lifetime levels."""
    return [lv for lv in schedule
            if lv.kind in ("in_context", "memory") or lv.lifetime == "stream"]


def run(loaded: Loaded, *, batches: int = 2, threshold: float = THRESHOLD) -> dict:
    """Held-out bpb with everything on, each level off (stream levels also reset), all off."""
    corpus = heldout_corpus(loaded)
    windows = heldout_windows(corpus.heldout, seq_len=loaded.seq_len,
                              batch=int(loaded.cfg["batch"]), batches=batches)
    levels = ablatable(loaded.schedule)
    every = frozenset(lv.name for lv in levels)
    base = windows_bpb(loaded, windows)
    rows = [{"ablation": "none", "level": "", "kind": "", "lifetime": "", "bpb": base,
             "delta": 0.0, "flagged": False}]

    def add(ablation: str, level: str, kind: str = "", lifetime: str = "", **how) -> None:
        bpb = windows_bpb(loaded, windows, **how)
        rows.append({"ablation": ablation, "level": level, "kind": kind, "lifetime": lifetime,
                     "bpb": bpb, "delta": bpb - base, "flagged": abs(bpb - base) < threshold})

    for lv in levels:
        if lv.lifetime == "stream":
            # A stream level does not learn while held-out windows are read, so switching its
            # updates off would change nothing by construction: what it contributes is the
            # state it learned (reset) and what it learns at test time (learn).
            add("reset", lv.name, lv.kind, lv.lifetime, reset=frozenset({lv.name}))
            add("learn", lv.name, lv.kind, lv.lifetime, learn_stream=True)
        else:
            add("off", lv.name, lv.kind, lv.lifetime, off=frozenset({lv.name}))
    curves = {"on": position_bpb(loaded, windows)}
    if levels:
        add("all off", ", ".join(lv.name for lv in levels), off=every)
        curves["off"] = position_bpb(loaded, windows, off=every)
    return {"rows": rows, "threshold": threshold, "levels": [lv.name for lv in levels],
            "position_bpb": curves, "windows": sum(len(w) for w in windows),
            "units": "bits per byte"}
