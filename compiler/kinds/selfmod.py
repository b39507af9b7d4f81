"""The self-modifying Titans (NL §8.1, Eqs. 79-93): every projection is a memory."""

from __future__ import annotations

from nestgraph.compiler.kinds.attention import CORE
from nestgraph.compiler.kinds.base import Flow, ModuleKind, Ownable, bodies, call, hidden_of
from nestgraph.compiler.kinds.titans import memory_kind, memory_width

SELFMOD = ("nestgraph.runtime.layers.selfmod", "S")


def _ownables(name: str, spec, model) -> list[Ownable]:
    paths = bodies(name, model)
    kind = "self_modifying_titans"
    return [Ownable(name, "param", name, tuple(f"{b}.proj" for b in paths), False, kind),
            Ownable(f"{name}.memory", "param", name, tuple(f"{b}.memory" for b in paths),
                    False, kind, memory=True),
            Ownable(f"{name}.projections", "param", name,
                    tuple(f"{b}.projections" for b in paths), False, kind, memory=True)]


def _constructor(spec, dim: int, owners: dict):
    """The architecture; the chunks, objective and rates are the owning levels' (`learn_as`).
    Whether values are the memory's own output sets its initial state, so it is an argument."""
    return call("S.SelfModifyingTitans", dim=dim, heads=spec.heads, kind=memory_kind(spec),
                hidden=hidden_of(dim // spec.heads, spec.memory.expand), conv=spec.conv,
                adaptive_q=spec.adaptive_q, gate=spec.gate,
                **{f"adaptive_{r}": False for r in "kv" if not getattr(spec, f"adaptive_{r}")},
                self_values=owners["memory"].values == "self")


def _flops(ownable: Ownable, spec, model, seq_len: int) -> int:
    d, layers = model.dim, len(ownable.paths)
    width = memory_width(spec, d)
    if ownable.name.endswith(".projections"):  # P memories: read x, k, v, then the gradient
        return layers * (5 if spec.adaptive_q else 4) * 4 * 2 * d * width
    if ownable.name.endswith(".memory"):  # read q, k, v, then the gradient
        return layers * 4 * 2 * d * width
    return layers * 2 * 3 * d * d  # static q, gate, out


def _flow(name: str, spec, present: list[str]) -> Flow:
    return Flow([name], [name], [
        (name, f"{name}.projections", "data", "x"),
        (f"{name}.projections", f"{name}.memory", "values", "k, v, η, α"),
        (f"{name}.memory", name, "data", "o = M(q)")])


KIND = ModuleKind("self_modifying_titans", _ownables, _constructor, _flops, (CORE, SELFMOD),
                  _flow, produces=("lr", "forget"),
                  # Every memory may also learn by plain GD (the Titans rule; the main memory
                  # with momentum too): NL Table 6's ablations of DGD.
                  memory_rules=("dgd", "titans"), no_momentum=("projections",))
