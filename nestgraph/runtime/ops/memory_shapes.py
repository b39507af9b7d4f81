"""The memory architectures' weight matrices by name and shape, with no torch: the ops, the
layers' initial states and the compiler's shape and cost passes all read them from here.

* ``linear``: ``M(z) = W z``, one matrix ``w`` (d × d);
* ``mlp``: the residual ``M(z) = z + W1 σ(W2 z)``: ``w1`` (d × h), ``w2`` (h × d);
* ``plainL`` (L = 2, 3, 4): the plain MLP of Titans' depth study (§5.5),
  ``M(z) = P_L σ(P_{L−1} ⋯ σ(P_1 z))``: ``p1`` (h × d), ``p2 … p_{L−1}`` (h × h), ``pL`` (d × h).
  Depth 1 is ``linear``.
"""

from __future__ import annotations

KINDS = ("linear", "mlp", "plain2", "plain3", "plain4")


def depth(kind: str) -> int:
    """How many weight matrices a read goes through."""
    return {"linear": 1, "mlp": 2}.get(kind) or int(kind.removeprefix("plain"))


def is_plain(kind: str) -> bool:
    return kind.startswith("plain")


def weight_shapes(kind: str, dim: int, hidden: int) -> dict[str, tuple[int, int]]:
    """Each matrix's (rows, columns): ``W[out, in]``, in the order a read meets them last
    to first for ``mlp`` (as its names have always been) and first to last for ``plainL``."""
    if kind == "linear":
        return {"w": (dim, dim)}
    if kind == "mlp":
        return {"w1": (dim, hidden), "w2": (hidden, dim)}
    layers = depth(kind)
    widths = [dim] + [hidden] * (layers - 1) + [dim]
    return {f"p{i + 1}": (widths[i + 1], widths[i]) for i in range(layers)}


def spec_kind(kind: str, layers: int) -> str:
    """The runtime kind of a spec's ``memory: {kind, depth}``."""
    return f"plain{layers}" if kind == "plain_mlp" else kind
