"""Module settings that depend on the model: what the schema, seeing one entry, cannot check.

Requires: the IR. Ensures: a diagnostic, at the module's ``heads``, for each module whose heads
do not divide ``model.dim`` (each head reads an equal share of the width), and one at
``model.vocab`` when ``data.tokenizer`` is ``{bpe: N}`` and the vocabulary is not N, so that
`validate` refuses what the shapes pass could not build or training could not feed. (A
tokenizer file is read only when training starts, which checks it then.)
"""

from __future__ import annotations

import networkx as nx

from nestgraph.compiler.ir import facts
from nestgraph.compiler.passes.common import report


def check_modules(g: nx.DiGraph) -> None:
    spec = facts(g).spec
    _check_vocab(g)
    dim = spec.model.dim
    for name, module in spec.modules.items():
        heads = getattr(module, "heads", None)
        if heads is None or dim % heads == 0:
            continue
        report(g, f"module '{name}' splits model.dim = {dim} into {heads} heads, which does not "
               "divide it", ("modules", name, "heads"),
               f"use heads that divide {dim}, e.g. {_nearest_divisor(dim, heads)}", "E-SHAPE",
               ("each head reads an equal share of the model's width",))


def _check_vocab(g: nx.DiGraph) -> None:
    spec = facts(g).spec
    wanted = getattr(spec.data.tokenizer, "bpe", None)
    if wanted is None or spec.model.vocab == wanted:
        return
    report(g, f"model.vocab is {spec.model.vocab}, but data.tokenizer trains a BPE of {wanted} "
           "tokens", ("model", "vocab"), f"set model.vocab to {wanted}", "E-SHAPE",
           ("every token id needs its own row of the embedding",))


def _nearest_divisor(n: int, near: int) -> int:
    divisors = [d for d in range(1, min(n, 4 * near) + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - near), -d))
