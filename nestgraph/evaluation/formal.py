"""The copy task: copying and the formal languages of the paper's Table 5, by length."""

from __future__ import annotations

from nestgraph.evaluation.finetune import finetune
from nestgraph.evaluation.generators import FORMAL
from nestgraph.evaluation.loaded import Loaded
from nestgraph.evaluation.scoring import accuracy


def run(loaded: Loaded, *, sizes: tuple[int, ...] = (4, 8, 16, 32), samples: int = 8,
        seed: int = 0, finetune_steps: int = 0) -> dict:
    """Accuracy of each language at each n (the string's size parameter, not its bytes).

    aⁿbⁿ and aⁿbⁿcⁿ have one string per n, so they are scored once per n.
    """
    if finetune_steps:
        loaded = finetune(loaded, _format_text(sizes, seed + 1_000_003), finetune_steps)
    rows = []
    for n in sizes:
        for name, make in FORMAL.items():
            items = {make(n, seed=seed * 7919 + k) for k in range(samples)}
            items = sorted(items, key=lambda it: it.text)
            rows.append({"language": name, "n": n, "bytes": len(items[0].text),
                         **accuracy(loaded, items)})
    return {"rows": rows, "finetuned_steps": finetune_steps}


def _format_text(sizes: tuple[int, ...], seed: int, count: int = 64) -> bytes:
    parts = [make(n, seed=seed + k).text for k in range(count) for n in sizes
             for make in FORMAL.values()]
    return b"\n".join(parts)
