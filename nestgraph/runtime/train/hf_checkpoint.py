"""A Hugging Face-format checkpoint (a folder with ``config.json`` and ``model.safetensors``)
as the source of `convert`: its weights under the names a nestgraph Transformer gives them.

Only Llama-style models map exactly. Their layer is nestgraph's ``[attn, mlp]`` block with
RMSNorm before each sub-block, RoPE in the rotate-half convention (the first half of a head's
dimensions paired with the second, which is how `nestgraph.runtime.layers.core.rope` pairs
them, so q and k need no permutation), no biases, and a SwiGLU MLP (a ``gated`` silu MLP:
gate, up, down are W1, W3, W2). q, k and v stack into the fused ``qkv`` weight in that order,
each keeping its heads in order. GPT-2-style models do not map: nestgraph has no learned
absolute positions, no biases on its projections and no tanh-approximated GELU.

The config is read with ``transformers`` (the ``hf`` extra), which fills in the defaults a
config.json leaves out; the weights with ``safetensors``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from nestgraph.errors import EnvironmentProblem, UsageProblem

INSTALL = "pip install 'nestgraph[hf]'"
CONFIG, WEIGHTS, INDEX = "config.json", "model.safetensors", "model.safetensors.index.json"
# A nestgraph Transformer's module names (specs/transformer.yaml): --map renames them.
ATTN, MLP = "attn", "mlp"
_NOT_GPT2 = ("nestgraph has no learned absolute position embeddings (wpe), no biases on its "
             "attention and MLP projections, and only the exact GELU (GPT-2 uses the tanh "
             "approximation)")


@dataclass(frozen=True)
class HFModel:
    """What the target must match, and the weights in a nestgraph Transformer's names."""

    dim: int
    layers: int
    vocab: int
    heads: int
    hidden: int  # the MLP's intermediate width
    activation: str
    rope_base: float
    eps: float  # the RMSNorms' epsilon
    tied: bool  # the output projection is the embedding
    weights: dict[str, torch.Tensor]


def is_hf_folder(path: Path) -> bool:
    """A folder with a config.json that is not a nestgraph run (runs have checkpoints/)."""
    path = Path(path)
    return (path / CONFIG).is_file() and not (path / "checkpoints").is_dir()


def read_hf(folder: Path) -> HFModel:
    """The checkpoint in `folder`, checked to be a Llama-style model that maps exactly."""
    folder = Path(folder)
    config = _config(folder)
    shape = _llama_shape(config, folder)
    return HFModel(**shape, weights=_renamed(_tensors(folder), shape["layers"], shape["tied"]))


def _config(folder: Path):
    try:
        from transformers import AutoConfig
    except ImportError:
        raise EnvironmentProblem("reading a Hugging Face checkpoint needs the transformers "
                                 "package, which is not installed", INSTALL) from None
    try:
        return AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        raise UsageProblem(f"cannot read '{folder / CONFIG}' as a Hugging Face config: {err}",
                           "pass a folder saved by save_pretrained (config.json and "
                           "model.safetensors)") from None


def _llama_shape(config, folder: Path) -> dict:
    """HFModel's fields but the weights; a feature nestgraph lacks is refused, naming it."""
    kind = getattr(config, "model_type", "")
    if kind == "gpt2":
        raise UsageProblem(f"'{folder}' is a GPT-2 model, which nestgraph cannot load "
                           f"exactly: {_NOT_GPT2}",
                           "convert a Llama-style checkpoint (model_type llama)")
    if kind != "llama":
        raise UsageProblem(f"'{folder}' is a '{kind}' model; only Llama-style checkpoints "
                           "(model_type llama) map exactly onto a nestgraph Transformer",
                           "convert a Llama-style checkpoint")
    dim, heads = config.hidden_size, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or dim // heads
    rope = dict(getattr(config, "rope_scaling", None) or {})
    rope.update(getattr(config, "rope_parameters", None) or {})
    refusals = [
        (config.num_key_value_heads != heads,
         f"it shares keys and values across heads ({config.num_key_value_heads} key/value "
         f"heads for {heads} query heads); nestgraph's attention has one per head"),
        (head_dim * heads != dim,
         f"its heads are {head_dim} wide, not hidden_size/heads = {dim / heads:g}"),
        (getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False),
         "its projections have biases; nestgraph's have none"),
        (rope.get("rope_type", rope.get("type", "default")) != "default",
         f"its RoPE is scaled ({rope.get('rope_type', rope.get('type'))}); nestgraph's is "
         "the plain one"),
        (config.hidden_act not in ("silu", "gelu", "relu"),
         f"its MLP activation '{config.hidden_act}' is none of nestgraph's (silu, gelu, relu)"),
    ]
    for refused, why in refusals:
        if refused:
            raise UsageProblem(f"'{folder}' cannot be loaded exactly: {why}",
                               "convert a checkpoint without that feature")
    return {"dim": dim, "layers": config.num_hidden_layers, "vocab": config.vocab_size,
            "heads": heads, "hidden": config.intermediate_size,
            "activation": config.hidden_act,
            "rope_base": float(rope.get("rope_theta", getattr(config, "rope_theta", 1e4))),
            "eps": float(config.rms_norm_eps),
            "tied": bool(getattr(config, "tie_word_embeddings", False))}


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint: one model.safetensors, or the shards its index names."""
    import safetensors.torch

    if (folder / WEIGHTS).is_file():
        files = [folder / WEIGHTS]
    elif (folder / INDEX).is_file():
        try:
            index = json.loads((folder / INDEX).read_text())
            files = [folder / name for name in sorted(set(index["weight_map"].values()))]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            raise UsageProblem(f"cannot read the shard index '{folder / INDEX}'",
                               "save the model again with save_pretrained") from None
    else:
        raise UsageProblem(f"'{folder}' has no {WEIGHTS}",
                           "save the model with save_pretrained (safetensors, the default)")
    out = {}
    for file in files:
        try:
            out.update(safetensors.torch.load_file(str(file)))
        except (OSError, RuntimeError, ValueError) as err:  # missing, truncated, not one
            raise UsageProblem(f"cannot read '{file}': {err}",
                               "save the model again with save_pretrained") from None
    return out


def _renamed(tensors: dict[str, torch.Tensor], layers: int,
             tied: bool) -> dict[str, torch.Tensor]:
    """The Llama names as a nestgraph Transformer's; q, k, v stacked into qkv."""
    take = dict(tensors)

    def pop(name: str) -> torch.Tensor:
        if name not in take:
            raise UsageProblem(f"the checkpoint has no '{name}'",
                               "save the whole model with save_pretrained")
        return take.pop(name)

    out = {"embed.weight": pop("model.embed_tokens.weight"), "norm.weight": pop("model.norm.weight")}
    if not tied or "lm_head.weight" in take:
        out["unembed.weight"] = pop("lm_head.weight")
    for i in range(layers):
        hf, ng = f"model.layers.{i}.", f"layers.{i}.blocks."
        attn = hf + "self_attn."
        out[f"{ng}{ATTN}.norm.weight"] = pop(hf + "input_layernorm.weight")
        out[f"{ng}{ATTN}.body.qkv.weight"] = torch.cat(
            [pop(f"{attn}{p}_proj.weight") for p in "qkv"], dim=0)
        out[f"{ng}{ATTN}.body.out.weight"] = pop(attn + "o_proj.weight")
        out[f"{ng}{MLP}.norm.weight"] = pop(hf + "post_attention_layernorm.weight")
        for ours, theirs in (("w1", "gate"), ("w3", "up"), ("w2", "down")):
            out[f"{ng}{MLP}.body.{ours}"] = pop(f"{hf}mlp.{theirs}_proj.weight")
    # Older checkpoints keep RoPE's frequencies as a buffer: nestgraph computes its own.
    left = [n for n in take if not n.endswith("rotary_emb.inv_freq")]
    if left:
        raise UsageProblem(f"the checkpoint has weights a Llama-style model does not: "
                           f"{', '.join(sorted(left)[:4])}{' …' if len(left) > 4 else ''}",
                           "convert a plain Llama-style checkpoint")
    return out
