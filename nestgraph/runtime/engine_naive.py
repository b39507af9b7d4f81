"""The slow, obvious reference for `engine.read_sequence`: one token at a time.

For every token, run the model on that token alone (attention reads the cache of the tokens
before it) and keep its loss. At the end of each chunk, take the gradient of the chunk's summed
loss with respect to each in-context level's weights as used during that chunk, add it to the
level's running sum, and when the level's period is reached, step. This is Eq. 71 written as a
loop. With ``chunk=1`` every token is its own chunk: the textbook per-token rule. Tests hold the
chunk-parallel engine to it in float64, outputs and gradients. Never used for training: it is
far too slow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from nestgraph.runtime.levels import LevelDef, owned_parameters, parameters_under
from nestgraph.runtime.mode import Cache, ReadMode


def read_sequence_reference(model: torch.nn.Module, levels: tuple[LevelDef, ...],
                            x: torch.Tensor, y: torch.Tensor,
                            chunk: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean next-token loss and logits (B, T, vocab), for sequence-lifetime levels only."""
    batch, seq_len = x.shape
    fast_levels = [lv for lv in levels if lv.kind == "in_context"]
    assert all(lv.lifetime == "sequence" for lv in fast_levels), "reference: sequence levels only"
    weights, owner = {}, {}
    for lv in fast_levels:
        for name, p in owned_parameters(model, lv).items():
            weights[name] = torch.stack([p] * batch)  # one copy per sequence
            owner[name] = lv
    sums = {n: torch.zeros_like(w) for n, w in weights.items()}
    # Nested CMS: each resetting level's copy of the faster block's initial state, and its sum.
    resets = {lv.name: list(parameters_under(model, lv.resets)) for lv in fast_levels}
    init = {n: weights[n] for names in resets.values() for n in names}
    init_sums = {n: torch.zeros_like(weights[n]) for n in init}
    velocity = {n: torch.zeros_like(w) for n, w in weights.items()}
    second = any(lv.meta == "second_order" for lv in fast_levels)
    truncated = [lv for lv in fast_levels if lv.meta == "truncated"]
    cache = Cache(mode=ReadMode(double_backward=second or bool(truncated)))
    # Truncated levels: every output of their modules during the chunk, one per token's call.
    outputs: dict[str, list] = {path: [] for lv in truncated for path in lv.modules}
    hooks = [model.get_submodule(path).register_forward_hook(
        lambda module, args, out, kept=kept: kept.append(out)) for path, kept in outputs.items()]
    # Data-dependent step sizes: each token's (input, output) of the level's modules.
    rate_of = {path: model.get_submodule(rate) for lv in fast_levels if lv.step_sizes
               for path, rate in zip(lv.modules, lv.step_sizes, strict=True)}
    seen: dict[str, list] = {path: [] for path in rate_of}
    hooks += [model.get_submodule(path).register_forward_hook(
        lambda module, args, out, kept=kept: kept.append((args[0], out)))
        for path, kept in seen.items()]
    losses, logits_all, chunk_loss = [], [], 0.0
    for t in range(seq_len):
        if t % chunk == 0:
            # The weights as used during this chunk: the gradient is taken with respect to this
            # alias, not through the earlier updates the weights also fed.
            now = {n: w.view_as(w) for n, w in weights.items()}
            chunk_loss = 0.0
            for kept in (*outputs.values(), *seen.values()):
                kept.clear()
        logits = functional_call(model, now, (x[:, t : t + 1], cache), strict=False)
        loss = F.cross_entropy(logits[:, 0], y[:, t], reduction="sum")
        losses.append(loss)
        logits_all.append(logits)
        chunk_loss = chunk_loss + loss
        if not weights or (t + 1) % chunk:
            continue
        names = list(weights)
        grads = dict(zip(names, torch.autograd.grad(chunk_loss, [now[n] for n in names],
                                                    retain_graph=True, create_graph=second),
                         strict=True))
        for path, kept in outputs.items():  # the error at a module's outputs, held fixed
            mine = [n for n in names if n.startswith(path + ".")]
            errors = torch.autograd.grad(chunk_loss, kept, retain_graph=True)
            grads.update(zip(mine, torch.autograd.grad(
                kept, [now[n] for n in mine], errors, retain_graph=True, create_graph=True),
                strict=True))
        for path, kept in seen.items():  # token by token, weighted by its step size
            mine = [n for n in names if n.startswith(path + ".")]
            errors = torch.autograd.grad(chunk_loss, [out for _, out in kept], retain_graph=True,
                                         create_graph=owner[mine[0]].meta == "second_order")
            total = [0.0] * len(mine)
            for (h, out), error in zip(kept, errors, strict=True):
                weight = torch.sigmoid(rate_of[path](h))  # (B, 1, 1): this token's step size
                parts = torch.autograd.grad(out, [now[n] for n in mine], weight * error,
                                            retain_graph=True, create_graph=True)
                total = [a + b for a, b in zip(total, parts, strict=True)]
            grads.update(zip(mine, total, strict=True))
        for n, g in grads.items():
            g = g.detach() if owner[n].meta == "first_order" else g
            sums[n] = sums[n] + g
            if n in init_sums:
                init_sums[n] = init_sums[n] + g
        for lv in fast_levels:
            if (t + 1) % lv.period == 0:
                for n in [n for n in names if owner[n] is lv]:
                    weights[n], velocity[n] = _step(lv, weights[n], sums[n], velocity[n])
                    sums[n] = torch.zeros_like(sums[n])
                for n in resets[lv.name]:  # restart the faster block from its learned start
                    init[n], _ = _step(lv, init[n], init_sums[n], torch.zeros_like(init[n]))
                    weights[n], velocity[n] = init[n], torch.zeros_like(init[n])
                    sums[n] = init_sums[n] = torch.zeros_like(sums[n])
    for hook in hooks:
        hook.remove()
    return torch.stack(losses).sum() / (batch * seq_len), torch.cat(logits_all, dim=1)


def _step(lv: LevelDef, w: torch.Tensor, g: torch.Tensor, v: torch.Tensor):
    rule = lv.rule
    if rule.clip > 0:  # per-sequence norm clipping
        norms = torch.stack([gi.norm() for gi in g]).view(-1, *([1] * (g.dim() - 1)))
        g = g * torch.clamp(rule.clip / (norms + 1e-12), max=1.0)
    g = g + rule.weight_decay * w
    v = rule.momentum * v + g if rule.momentum else g
    return w - rule.scale * v, v
