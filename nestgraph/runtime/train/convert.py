"""Initial weights for a build from a trained model: NL §7.3's levels stacked onto a trained
network (a Transformer's MLPs become the CMS blocks' initial states, then training continues).

A target weight is filled from the source weight of the same name, after the renames: a rule
``SRC=DST`` reads the target's ``…DST…`` from the source's ``…SRC…`` (the longest matching
DST wins). Weights matching a ``zero`` pattern start at zero: an MLP-chain block whose output
layer is zero adds nothing, so a chain whose other blocks are zeroed computes exactly the block
that was filled, and the converted model starts where the trained one ended. Every other
target weight keeps its fresh initial value, and the report names each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import torch

from nestgraph.errors import UsageProblem


@dataclass
class Conversion:
    weights: dict[str, torch.Tensor]
    copied: list[tuple[str, str]] = field(default_factory=list)  # (target, source)
    zeroed: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)  # source weights nothing read


def parse_renames(rules: list[str]) -> list[tuple[str, str]]:
    """``SRC=DST`` rules, longest DST first; a malformed one is a usage error."""
    out = []
    for rule in rules:
        src, sep, dst = rule.partition("=")
        if not sep or not src or not dst:
            raise UsageProblem(f"--map expects SRC=DST (name fragments), got '{rule}'",
                               "e.g. --map blocks.mlp.body.=blocks.cms.body.blocks.fast.")
        out.append((src, dst))
    return sorted(out, key=lambda r: -len(r[1]))


def convert(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
            renames: list[tuple[str, str]], zero: list[str]) -> Conversion:
    """The target's weights filled from `source` (see the module's docstring)."""
    result = Conversion({n: t.detach().clone() for n, t in target.items()})
    read = set()
    for name, tensor in target.items():
        if any(fnmatchcase(name, pattern) for pattern in zero):
            result.weights[name] = torch.zeros_like(tensor)
            result.zeroed.append(name)
            continue
        origin = source_name(name, renames)
        if origin not in source:
            result.fresh.append(name)
            continue
        if source[origin].shape != tensor.shape:
            raise UsageProblem(
                f"'{origin}' is {tuple(source[origin].shape)} in the source but '{name}' is "
                f"{tuple(tensor.shape)} in the target",
                "compile the target with the source's widths (e.g. "
                "modules.cms.blocks.fast.expand=4 for a Transformer MLP of expand 4)")
        result.weights[name] = source[origin].detach().to(tensor.dtype).clone()
        result.copied.append((name, origin))
        read.add(origin)
    result.unused = sorted(set(source) - read)
    return result


def save_weights(weights: dict[str, torch.Tensor], path) -> None:
    """Write a weights file atomically: to a temporary name beside it, then renamed."""
    import os
    from pathlib import Path

    import safetensors.torch

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        safetensors.torch.save_file({n: t.contiguous() for n, t in weights.items()}, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def source_name(name: str, renames: list[tuple[str, str]]) -> str:
    """The source weight a target weight is read from, after the renames."""
    for src, dst in renames:
        if dst in name:
            return name.replace(dst, src, 1)
    return name
