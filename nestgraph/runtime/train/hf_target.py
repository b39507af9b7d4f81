"""Whether a build computes what a Hugging Face checkpoint's model computes, module by module,
and the checkpoint's weights as that build needs them (`hf_checkpoint` reads them).

Shapes alone would let much through that changes the output: a head count, RoPE's base, an
activation, a LayerNorm where the checkpoint has an RMSNorm. Every target module that receives
a checkpoint weight is therefore checked against the checkpoint's config, and a mismatch is
refused with the override that compiles a build that fits.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nestgraph.errors import UsageProblem
from nestgraph.runtime.layers import core
from nestgraph.runtime.train.convert import source_name
from nestgraph.runtime.train.hf_checkpoint import HFModel


def source_for(hf: HFModel, model: nn.Module, renames: list[tuple[str, str]],
               zero: list[str]) -> dict[str, torch.Tensor]:
    """`hf`'s weights for `model` (a `core.NestedLM`), after checking that they fit it."""
    from fnmatch import fnmatchcase

    _check_model(hf, model)
    seen: dict[int, dict[str, int]] = {}  # layer -> "attn"/"mlp" -> block position
    for name in model.state_dict():
        origin = source_name(name, renames)
        if origin in hf.weights and not any(fnmatchcase(name, p) for p in zero):
            _check_weight(hf, model, name, origin, seen)
    for layer, kinds in seen.items():
        if kinds.get("attn", -1) > kinds.get("mlp", math.inf):
            raise UsageProblem(f"layer {layer} of the target runs its MLP before its "
                               "attention; the checkpoint's layer is attention, then MLP",
                               "order model.block as the attention module, then the MLP")
    return _for_head(hf, model)


def _check_model(hf: HFModel, model: nn.Module) -> None:
    sizes = [("dim", model.dim, hf.dim, "hidden_size"),
             ("layers", len(model.layers), hf.layers, "num_hidden_layers"),
             ("vocab", model.vocab, hf.vocab, "vocab_size")]
    for key, ours, theirs, field in sizes:
        if ours != theirs:
            raise UsageProblem(f"the target's model.{key} is {ours} but the checkpoint's "
                               f"{field} is {theirs}",
                               f"compile the target with model.{key}={theirs}")
    if model.unembed is None and not hf.tied:
        raise UsageProblem("the target ties its output projection to the embedding but the "
                           "checkpoint has its own (lm_head)",
                           "compile the target with model.tie_embeddings=false")
    _check_norm(hf, model.norm, "norm", "model.final_norm=rms")


def _check_weight(hf: HFModel, model: nn.Module, name: str, origin: str,
                  seen: dict[int, dict[str, int]]) -> None:
    """The module that `name` belongs to computes what the checkpoint's `origin` did."""
    if origin.endswith(("body.qkv.weight", "body.out.weight")):
        path = name.rsplit(".", 2)[0]
        _check_attention(hf, _module(model, path, core.Attention, name, "attention"), path)
        _note_block(hf, model, path, "attn", seen)
    elif origin.rsplit(".", 1)[-1] in ("w1", "w2", "w3"):
        path = name.rsplit(".", 1)[0]
        _check_mlp(hf, model, _module(model, path, core.MLP, name, "MLP"), path)
        _note_block(hf, model, path, "mlp", seen)


def _module(model: nn.Module, path: str, kind: type, name: str, what: str) -> nn.Module:
    module = model.get_submodule(path)
    if not isinstance(module, kind):
        raise UsageProblem(f"'{name}' would receive the checkpoint's {what} weights but is "
                           f"part of a {type(module).__name__}",
                           "map the checkpoint's weights onto a module of the same kind")
    return module


def _check_attention(hf: HFModel, attn: core.Attention, path: str) -> None:
    spec = _spec_path(path)
    wrong = [(attn.heads != hf.heads, f"{attn.heads} heads, the checkpoint {hf.heads}",
              f"{spec}.heads={hf.heads}"),
             (not attn.use_rope, "no RoPE, the checkpoint's attention has it",
              f"{spec}.rope=true"),
             (attn.rope_base != hf.rope_base,
              f"RoPE base {attn.rope_base:g}, the checkpoint {hf.rope_base:g}",
              f"{spec}.rope_base={hf.rope_base:g}"),
             (attn.window != 0, f"a window of {attn.window}, the checkpoint attends to all",
              f"{spec}.window=0"),
             (attn.persistent is not None, "persistent tokens, the checkpoint has none",
              f"{spec}.persistent=0")]
    _refuse(wrong, path)


def _check_mlp(hf: HFModel, model: nn.Module, mlp: core.MLP, path: str) -> None:
    spec = _spec_path(path)
    chain = model.get_submodule(path.rsplit(".", 2)[0]) if ".body.blocks." in path else None
    expand = f"{hf.hidden / hf.dim:.10g}"
    wrong = [(mlp.w3 is None, "an ungated MLP, the checkpoint's is gated (SwiGLU)",
              f"{spec}.gated=true"),
             (mlp.act is not core.ACTIVATIONS[hf.activation],
              f"{_activation(mlp)} activation, the checkpoint {hf.activation}",
              f"{spec}.activation={hf.activation}"),
             (mlp.w1.shape[0] != hf.hidden,
              f"a hidden width of {mlp.w1.shape[0]}, the checkpoint {hf.hidden}",
              f"{spec}.expand={expand}"),
             (isinstance(chain, core.MLPChain) and chain.variant == "independent",
              "an independent chain, which mixes its blocks' outputs",
              f"{spec.rsplit('.blocks.', 1)[0]}.variant=sequential")]
    _refuse(wrong, path)


def _activation(mlp: core.MLP) -> str:
    return next((n for n, f in core.ACTIVATIONS.items() if f is mlp.act), "another")


def _check_block(hf: HFModel, model: nn.Module, path: str) -> None:
    """The sub-block holding `path` is ``x + body(RMSNorm(x))`` with the checkpoint's epsilon."""
    parts = path.split(".")
    block = model.get_submodule(".".join(parts[:4]))
    # The shorthand entries are x + module(RMSNorm(x)).
    fix = f"'model.block=[{', '.join(model.layers[int(parts[1])].blocks)}]'"
    if not block.residual:
        _refuse([(True, "no residual, the checkpoint's sub-blocks have one", fix)],
                ".".join(parts[:4]))
    _check_norm(hf, block.norm, ".".join(parts[:4]) + ".norm", fix)


def _check_norm(hf: HFModel, norm: nn.Module, path: str, fix: str) -> None:
    if not isinstance(norm, core.RMSNorm):
        _refuse([(True, f"a {type(norm).__name__}, the checkpoint an RMSNorm", fix)], path)
    if norm.eps != hf.eps:
        raise UsageProblem(f"'{path}' is an RMSNorm of epsilon {norm.eps:g} but the "
                           f"checkpoint's rms_norm_eps is {hf.eps:g}",
                           "nestgraph's RMSNorm epsilon is fixed: convert a checkpoint whose "
                           f"rms_norm_eps is {norm.eps:g}")


def _refuse(wrong: list[tuple[bool, str, str]], path: str) -> None:
    """Every mismatch of one module, with the overrides that fix them all at once."""
    found = [(what, fix) for refused, what, fix in wrong if refused]
    if found:
        raise UsageProblem(f"the target's '{path}' has {'; '.join(w for w, _ in found)}",
                           f"compile the target with {' '.join(f for _, f in found)}")


def _spec_path(path: str) -> str:
    """``layers.0.blocks.M.body[.blocks.B]`` -> ``modules.M[.blocks.B]``."""
    parts = path.split(".")
    inner = f".blocks.{parts[6]}" if len(parts) > 6 else ""
    return f"modules.{parts[3]}{inner}"


def _block_index(model: nn.Module, path: str) -> int:
    parts = path.split(".")
    return list(model.layers[int(parts[1])].blocks).index(parts[3])


def _note_block(hf: HFModel, model: nn.Module, path: str, kind: str,
                seen: dict[int, dict[str, int]]) -> None:
    _check_block(hf, model, path)
    layer = int(path.split(".")[1])
    seen.setdefault(layer, {})[kind] = _block_index(model, path)


def _for_head(hf: HFModel, model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights with the output projection as the target has it.

    A tied nestgraph model divides its logits by sqrt(dim) (`core.NestedLM.forward`); the
    final RMSNorm's gain, multiplied by sqrt(dim), puts that factor back, so the logits are
    the checkpoint's. An untied target whose checkpoint is tied gets the embedding as its
    output projection.
    """
    weights = dict(hf.weights)
    if model.unembed is None:
        # In float32 at least: a bf16 gain times sqrt(dim) would round before the target's cast.
        gain = weights["norm.weight"]
        weights["norm.weight"] = gain.to(torch.promote_types(gain.dtype, torch.float32)) \
            * math.sqrt(hf.dim)
    elif "unembed.weight" not in weights:
        weights["unembed.weight"] = weights["embed.weight"]
    return weights
