"""The weights of a compiled model, by name and shape, without torch.

Drawing a spec needs each part's weights (names, shapes, counts). The compiler's shapes pass
finds them by building the network on torch's meta device, which costs the import of torch
(seconds). This module runs the same generated model source (`model_source`) against stand-ins
for the runtime's module classes that only record the parameters each constructor registers,
in the order `torch.nn.Module.named_parameters` yields them: a module's own parameters first,
then its submodules, each in the order assigned.

The stand-ins mirror the constructors of `nestgraph.runtime.layers.core`, `titans` and
`selfmod`; `tests/cli/test_graph_without_torch.py` checks that every shipped spec gets exactly the
names and shapes the shapes pass finds. Anything the stand-ins do not know (a new module type,
an argument they refuse) makes `param_shapes` return None, and the caller falls back to torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

from nestgraph.runtime.ops.memory_shapes import weight_shapes

Shape = tuple[int, ...]


class _Module:
    """A module as named_parameters sees it: own parameters, then submodules."""

    def __init__(self) -> None:
        self._params: dict[str, Shape] = {}
        self._children: dict[str, _Module] = {}

    def param(self, name: str, *shape: int) -> None:
        self._params[name] = tuple(int(s) for s in shape)

    def child(self, name: str, module: _Module | None) -> None:
        if module is not None:  # torch leaves a None attribute unregistered
            self._children[name] = module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Shape]]:
        for name, shape in self._params.items():
            yield prefix + name, shape
        for name, module in self._children.items():
            yield from module.named_parameters(f"{prefix}{name}.")


def _linear(inputs: int, outputs: int, bias: bool = True) -> _Module:
    m = _Module()
    m.param("weight", outputs, inputs)
    if bias:
        m.param("bias", outputs)
    return m


def _rms(dim: int) -> _Module:
    m = _Module()
    m.param("weight", dim)
    return m


def _dict(modules: dict[str, _Module]) -> _Module:
    m = _Module()
    for name, module in modules.items():
        m.child(name, module)
    return m


def _divisible(dim: int, heads: int) -> None:
    if dim % heads:
        raise ValueError(f"dim {dim} is not divisible by heads {heads}")


# ----------------------------------------------------------------- nestgraph.runtime.layers.core


def make_norm(kind: str, dim: int) -> _Module:
    if kind == "rms":
        return _rms(dim)
    m = _Module()
    if kind == "layer":
        m.param("weight", dim)
        m.param("bias", dim)
    return m


def MLP(dim: int, hidden: int, activation: str = "gelu", gated: bool = False) -> _Module:  # noqa: N802
    m = _Module()
    m.param("w1", hidden, dim)
    m.param("w2", dim, hidden)
    if gated:
        m.param("w3", hidden, dim)
    return m


def MLPChain(blocks: dict[str, _Module], variant: str = "sequential",  # noqa: N802
             step_sizes: tuple[str, ...] = ()) -> _Module:
    m = _Module()
    m.child("blocks", _dict(blocks))
    if variant == "independent":
        m.param("mix", len(blocks))
    if step_sizes:
        m.child("rates", _dict({name: _linear(blocks[name]._params["w1"][1], 1)
                                for name in step_sizes}))
    return m


def Attention(dim: int, heads: int, window: int = 0, use_rope: bool = True,  # noqa: N802
              rope_base: float = 10000.0, persistent: int = 0) -> _Module:
    _divisible(dim, heads)
    m = _Module()
    m.child("qkv", _linear(dim, 3 * dim, bias=False))
    m.child("out", _linear(dim, dim, bias=False))
    if persistent:
        m.param("persistent", 2, heads, persistent, dim // heads)
    return m


def Residual(norm: _Module, body: _Module, residual: bool = True) -> _Module:  # noqa: N802
    m = _Module()
    m.child("norm", norm)
    m.child("body", body)
    return m


def Layer(blocks: dict[str, _Module]) -> _Module:  # noqa: N802
    m = _Module()
    m.child("blocks", _dict(blocks))
    return m


def NestedLM(vocab: int, dim: int, layers: list[_Module], final_norm: _Module,  # noqa: N802
             tie_embeddings: bool = True) -> _Module:
    m = _Module()
    embed = _Module()
    embed.param("weight", vocab, dim)
    m.child("embed", embed)
    m.child("layers", _dict({str(i): layer for i, layer in enumerate(layers)}))
    m.child("norm", final_norm)
    if not tie_embeddings:
        m.child("unembed", _linear(dim, vocab, bias=False))
    return m


# ----------------------------------------------------------------- nestgraph.runtime.layers.titans


def _conv(channels: int, window: int) -> _Module:
    m = _Module()
    m.param("weight", channels, 1, window)
    return m


def _memory_init(kind: str, heads: int, head_dim: int, hidden: int, *lead: int) -> _Module:
    m = _Module()
    for name, (rows, cols) in weight_shapes(kind, head_dim, hidden).items():
        m.param(name, *lead, heads, rows, cols)
    return m


def NeuralMemory(dim: int, heads: int, kind: str = "mlp", hidden: int = 64,  # noqa: N802
                 conv: int = 4, gate: bool = True, lr: float | None = None,
                 forget: float | None = 0.0, momentum: float | None = 0.0,
                 produces: tuple[str, ...] | None = None, **_settings) -> _Module:
    _divisible(dim, heads)
    rates = (len(produces) if produces is not None
             else sum(value is None for value in (lr, forget, momentum)))
    proj = _Module()
    proj.child("qkv", _linear(dim, 3 * dim, bias=False))
    proj.child("conv", _conv(3 * dim, conv) if conv else None)
    proj.child("rates", _linear(dim, rates * heads) if rates else None)
    proj.child("norm", _rms(dim // heads))
    proj.child("gate", _linear(dim, dim, bias=False) if gate else None)
    proj.child("out", _linear(dim, dim, bias=False))
    m = _Module()
    m.child("proj", proj)
    m.child("memory", _memory_init(kind, heads, dim // heads, hidden))
    m.dim = dim
    return m


def MemoryAsGate(attn: _Module, mem: _Module) -> _Module:  # noqa: N802
    m = _Module()
    m.child("attn", attn)
    m.child("mem", mem)
    m.child("norms", _dict({"attn": _rms(mem.dim), "mem": _rms(mem.dim)}))
    return m


def MemoryAsContext(attn: _Module, mem: _Module, segment: int) -> _Module:  # noqa: N802
    return MemoryAsGate(attn, mem)  # the same parts: attention, memory, the gate's two norms


# ---------------------------------------------------------- nestgraph.runtime.layers.selfmod


def SelfModifyingTitans(dim: int, heads: int, kind: str = "mlp", hidden: int = 32,  # noqa: N802
                        conv: int = 4, adaptive_q: bool = False, gate: bool = True,
                        **_settings) -> _Module:
    _divisible(dim, heads)
    head_dim = dim // heads
    proj = _Module()
    proj.child("conv", _conv(dim, conv) if conv else None)
    proj.child("q", None if adaptive_q else _linear(dim, dim, bias=False))
    proj.param("readout", 2, heads, head_dim)
    proj.param("readout_bias", 2, heads)
    proj.child("norm", _rms(head_dim))
    proj.child("gate", _linear(dim, dim, bias=False) if gate else None)
    proj.child("out", _linear(dim, dim, bias=False))
    projections = _memory_init(kind, heads, head_dim, hidden, 5 if adaptive_q else 4)
    m = _Module()
    m.child("proj", proj)
    m.child("memory", _memory_init(kind, heads, head_dim, hidden))
    m.child("projections", projections)
    return m


_NAMESPACE = {
    "L": SimpleNamespace(make_norm=make_norm, MLP=MLP, MLPChain=MLPChain, Attention=Attention,
                         Residual=Residual, Layer=Layer, NestedLM=NestedLM),
    "T": SimpleNamespace(NeuralMemory=NeuralMemory, MemoryAsGate=MemoryAsGate),
    "MAC": SimpleNamespace(MemoryAsContext=MemoryAsContext),
    "S": SimpleNamespace(SelfModifyingTitans=SelfModifyingTitans),
    # build_model hands memories their levels (`levels.bind_levels`): no weights change.
    "lv": SimpleNamespace(bind_levels=lambda model, schedule: model),
    "SCHEDULE": (),
}


def param_shapes(source: str) -> dict[str, Shape] | None:
    """Parameter name -> shape of the model `source` builds; None if the stand-ins cannot tell."""
    namespace = dict(_NAMESPACE)
    try:
        exec(compile(source, "<nestgraph model, torch-free>", "exec"), namespace)  # noqa: S102
        model = namespace["build_model"]()
        return dict(model.named_parameters())
    except Exception:  # noqa: BLE001 - anything unknown: let the torch path decide
        return None
