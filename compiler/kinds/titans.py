"""Titans' neural long-term memory (LMM), and its pairings with attention: MAG (memory as a
gate) and MAC (memory as context)."""

from __future__ import annotations

from nestgraph.compiler.kinds.attention import CORE, attention_call
from nestgraph.compiler.kinds.attention import flops as attention_flops
from nestgraph.compiler.kinds.base import Flow, ModuleKind, Ownable, bodies, call, hidden_of
from nestgraph.runtime.ops.memory_shapes import spec_kind, weight_shapes

TITANS = ("nestgraph.runtime.layers.titans", "T")
MAC = ("nestgraph.runtime.layers.mac", "MAC")


def memory_kind(spec) -> str:
    """The runtime's name of the spec's memory architecture (``plain3`` for depth 3)."""
    return spec_kind(spec.memory.kind, spec.memory.depth)


def memory_width(spec, dim: int) -> int:
    """The width a read and a gradient of the memory cost per head, summed over heads: its
    weights per head over the head's width."""
    head_dim = dim // spec.heads
    shapes = weight_shapes(memory_kind(spec), head_dim, hidden_of(head_dim, spec.memory.expand))
    return sum(rows * cols for rows, cols in shapes.values()) // head_dim


def memory_call(spec, dim: int, level, gate: bool):
    """`T.NeuralMemory`'s architecture. Its chunk, objective and rule are the owning level's,
    stated in SCHEDULE and handed over by `levels.bind_levels`; which rates it produces per
    token shapes its weights, so it is an argument."""
    produces = tuple(name for name in ("lr", "forget", "momentum")
                     if isinstance(getattr(level.rule, name, 0.0), str))
    return call("T.NeuralMemory", dim=dim, heads=spec.heads, kind=memory_kind(spec),
                hidden=hidden_of(dim // spec.heads, spec.memory.expand), conv=spec.conv,
                qk_norm=spec.qk_norm, gate=gate, self_values=level.values == "self",
                produces=produces)


def _memory_ownables(name: str, spec, model) -> list[Ownable]:
    paths = bodies(name, model)
    return [Ownable(name, "param", name, tuple(f"{b}.proj" for b in paths), False,
                    "neural_memory"),
            Ownable(f"{name}.memory", "param", name, tuple(f"{b}.memory" for b in paths),
                    False, "neural_memory", memory=True)]


def _memory_flops(ownable: Ownable, spec, model, seq_len: int) -> int:
    d, layers = model.dim, len(ownable.paths)
    if not ownable.memory:  # q, k, v, gate, out
        return layers * 2 * 5 * d * d
    return layers * 3 * 2 * d * memory_width(spec, d)  # read, then the gradient (about 2 reads)


def _memory_flow(name: str, spec, present: list[str]) -> Flow:
    return Flow([name], [name], [(name, f"{name}.memory", "values", "k, v, rates"),
                                 (f"{name}.memory", name, "data", "M(q)")])


NEURAL_MEMORY = ModuleKind(
    "neural_memory", _memory_ownables,
    lambda spec, dim, owners: memory_call(spec, dim, owners["memory"], spec.gate),
    _memory_flops, (CORE, TITANS), _memory_flow, produces=("lr", "forget", "momentum"),
    memory_rules=("titans", "dgd"))


def _gate_ownables(name: str, spec, model) -> list[Ownable]:
    paths = bodies(name, model)
    attn = tuple(f"{b}.attn" for b in paths)
    return [Ownable(f"{name}.attn", "param", name, attn, False, "attention"),
            Ownable(f"{name}.cache", "state", name, attn, False, "attention"),
            Ownable(name, "param", name, tuple(f"{b}.{p}" for b in paths
                                               for p in ("mem.proj", "norms")),
                    False, "neural_memory"),
            Ownable(f"{name}.memory", "param", name, tuple(f"{b}.mem.memory" for b in paths),
                    False, "neural_memory", memory=True)]


def _gate_constructor(spec, dim: int, owners: dict):
    attention = attention_call(dim, spec.heads, spec.window, True, 10000.0, spec.persistent)
    return call("T.MemoryAsGate", attention, memory_call(spec, dim, owners["memory"], False))


def _gate_flops(ownable: Ownable, spec, model, seq_len: int) -> int:
    if ownable.type == "attention":
        return attention_flops(ownable, spec, model, seq_len)
    return _memory_flops(ownable, spec, model, seq_len)


def _gate_flow(name: str, spec, present: list[str]) -> Flow:
    return Flow([f"{name}.attn", name], [name], [
        (f"{name}.attn", f"{name}.cache", "values", "k, v"),
        (f"{name}.cache", f"{name}.attn", "data", "read"),
        (f"{name}.attn", name, "data", "gated"),
        (name, f"{name}.memory", "values", "k, v, rates"),
        (f"{name}.memory", name, "data", "M(q)")])


MEMORY_AS_GATE = ModuleKind("memory_as_gate", _gate_ownables, _gate_constructor, _gate_flops,
                            (CORE, TITANS), _gate_flow, produces=("lr", "forget", "momentum"),
                            memory_rules=("titans", "dgd"))


def segment_problem(module: str, segment: int, seq_len: int) -> str | None:
    """MAC's segment must be shorter than a sequence: the first recall of anything written
    comes with the second segment (checked at compile time, and again for a train-time
    seq_len)."""
    if segment < seq_len:
        return None
    return (f"module '{module}' recalls only its initial memory: its {segment}-token segment "
            f"fills the whole {seq_len}-token sequence, and the memory is read back from the "
            "next segment on")


def _context_constructor(spec, dim: int, owners: dict):
    attention = attention_call(dim, spec.heads, 0, True, 10000.0, spec.persistent)
    return call("MAC.MemoryAsContext", attention,
                memory_call(spec, dim, owners["memory"], False), segment=spec.segment)


def _context_flops(ownable: Ownable, spec, model, seq_len: int) -> int:
    d, layers = model.dim, len(ownable.paths)
    if ownable.type == "attention" and ownable.kind == "param":
        return layers * 2 * 7 * d * d  # q, k, v of the recollection and the tokens; out
    if ownable.type == "attention":  # a query sees half its segment on average, twice over
        return layers * 2 * 2 * d * (2 * ((min(spec.segment, seq_len) + 1) // 2)
                                     + spec.persistent)
    if not ownable.memory:  # q, k, v and out, for the recall and for the write
        return layers * 2 * 8 * d * d
    return layers * 4 * 2 * d * memory_width(spec, d)  # recall, read, gradient (2 reads)


def _context_flow(name: str, spec, present: list[str]) -> Flow:
    return Flow([name, f"{name}.attn"], [name], [
        (f"{name}.memory", f"{name}.attn", "data", "recall M(q)"),
        (f"{name}.attn", f"{name}.cache", "values", "k, v"),
        (f"{name}.cache", f"{name}.attn", "data", "read"),
        (f"{name}.attn", name, "data", "y"),
        (name, f"{name}.memory", "values", "k, v, rates of y"),
        (f"{name}.memory", name, "data", "gate M(q(y))")])


MEMORY_AS_CONTEXT = ModuleKind("memory_as_context", _gate_ownables, _context_constructor,
                               _context_flops, (CORE, TITANS, MAC), _context_flow,
                               produces=("lr", "forget", "momentum"),
                               memory_rules=("titans", "dgd"))
