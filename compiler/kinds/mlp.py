"""The MLP and the chain of MLPs (the Continuum Memory System, NL Eq. 70)."""

from __future__ import annotations

from nestgraph.compiler.kinds.attention import CORE
from nestgraph.compiler.kinds.base import Flow, ModuleKind, Ownable, bodies, call, hidden_of


def mlp_call(dim: int, expand: float, activation: str, gated: bool = False):
    extra = {"gated": True} if gated else {}  # absent: the goldens stay
    return call("L.MLP", dim=dim, hidden=hidden_of(dim, expand), activation=activation, **extra)


def _matrices(spec) -> int:
    return 3 if spec.gated else 2  # a gated MLP's W3


def _mlp_ownables(name: str, spec, model) -> list[Ownable]:
    return [Ownable(name, "param", name, tuple(bodies(name, model)), True, "mlp")]


def _mlp_flops(ownable: Ownable, spec, model, seq_len: int) -> int:
    return len(ownable.paths) * 2 * _matrices(spec) * model.dim * hidden_of(model.dim,
                                                                            spec.expand)


MLP = ModuleKind("mlp", _mlp_ownables,
                 lambda spec, dim, owners: mlp_call(dim, spec.expand, spec.activation,
                                                   spec.gated),
                 _mlp_flops, (CORE,))


def _chain_ownables(name: str, spec, model) -> list[Ownable]:
    paths = bodies(name, model)
    parts = [Ownable(f"{name}.{block}", "param", name,
                     tuple(f"{b}.blocks.{block}" for b in paths), True, "mlp_chain")
             for block in spec.blocks]
    if spec.variant == "independent":
        parts.append(Ownable(f"{name}.mix", "param", name, tuple(f"{b}.mix" for b in paths),
                             False, "mlp_chain"))
    if stepped(spec):  # the read-outs of the blocks' step sizes, trained by a slower level
        parts.append(Ownable(f"{name}.rates", "param", name, tuple(f"{b}.rates" for b in paths),
                             False, "mlp_chain"))
    return parts


def stepped(spec) -> tuple[str, ...]:
    """The chain's blocks whose levels take a per-token step size."""
    return tuple(name for name, b in spec.blocks.items() if b.step_size)


def step_size_paths(block_paths: list[str]) -> list[str]:
    """The read-out of each block's step size, beside the block (``….blocks.fast`` ->
    ``….rates.fast``)."""
    out = []
    for path in block_paths:
        body, _, block = path.rpartition(".blocks.")
        out.append(f"{body}.rates.{block}")
    return out


def _chain_constructor(spec, dim: int, owners: dict):
    blocks = {name: mlp_call(dim, b.expand, b.activation, b.gated)
              for name, b in spec.blocks.items()}
    extra = {"step_sizes": stepped(spec)} if stepped(spec) else {}  # absent: goldens stay
    return call("L.MLPChain", blocks, variant=spec.variant, **extra)


def _chain_flops(ownable: Ownable, spec, model, seq_len: int) -> int:
    block = ownable.name.split(".", 1)[1]
    if block == "mix":
        return 0
    if block == "rates":  # one read-out per block, per token, each time a level fires
        return len(ownable.paths) * 2 * model.dim * len(stepped(spec))
    spec = spec.blocks[block]
    return len(ownable.paths) * 2 * _matrices(spec) * model.dim * hidden_of(model.dim,
                                                                            spec.expand)


def _chain_flow(name: str, spec, present: list[str]) -> Flow:
    have = set(present)
    blocks = [f"{name}.{b}" for b in spec.blocks if f"{name}.{b}" in have]
    if spec.variant == "independent":
        mix = f"{name}.mix"
        if mix in have:
            return Flow(blocks, [mix], [(b, mix, "data", "") for b in blocks])
        return Flow(blocks, blocks)
    chain = [(a, b, "data", "") for a, b in zip(blocks, blocks[1:], strict=False)]
    return Flow(blocks[:1], blocks[-1:], chain)


MLP_CHAIN = ModuleKind("mlp_chain", _chain_ownables, _chain_constructor, _chain_flops, (CORE,),
                       _chain_flow, produces=("lr",))
