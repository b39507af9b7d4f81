"""The fast weights of one batch while the engine reads it: their per-chunk aliases, the inner
gradient each level accumulates (NL Eq. 71), each level's update at its period, and the
nested CMS's learned initial states."""

from __future__ import annotations

from functools import partial

import torch

from nestgraph.runtime.levels import (
    GDRule,
    LevelDef,
    gd_step,
    in_context_levels,
    needs_double_backward,
    owned_parameters,
    parameters_under,
)
from nestgraph.runtime.stream import Carry


class FastWeights:
    """The fast weights of one batch, with their accumulators and momentum."""

    def __init__(self, model, levels, batch, stream, learn_stream, differentiable,
                 carry: Carry | None = None, reduce_stream=None):
        self.levels = in_context_levels(levels)
        self.reduce_stream = reduce_stream  # the mean over ranks of a stream signal, or None
        self.stream, self.learn_stream = stream, learn_stream
        self.differentiable = differentiable
        # Double backward somewhere (the read's mode); create_graph on the whole chunk's
        # graph only for full second-order levels (truncated ones build theirs in
        # `_through_outputs`).
        self.double_backward = differentiable and needs_double_backward(self.levels)
        self.second_order = differentiable and any(
            lv.meta == "second_order" and lv.lifetime == "sequence" for lv in self.levels)
        self.truncated = [lv for lv in self.levels if differentiable and lv.meta == "truncated"
                          and lv.lifetime == "sequence"]
        # Levels that take their gradient through their modules' outputs: truncated ones (the
        # error there held fixed) and those with data-dependent step sizes (the error there
        # weighted per token by the read-out of the module's input). Per module: its level,
        # its read-out (if any) and its (input, output) during the current chunk.
        through = [*self.truncated, *(lv for lv in self.levels if lv.step_sizes
                                      and lv not in self.truncated)]
        self.level_at = {path: lv for lv in through for path in lv.modules}
        self.rate_of = {path: model.get_submodule(rate) for lv in through if lv.step_sizes
                        for path, rate in zip(lv.modules, lv.step_sizes, strict=True)}
        self.seen: dict[str, list] = {path: [] for path in self.level_at}
        self._hooks = [model.get_submodule(path).register_forward_hook(
            partial(_keep_io, kept)) for path, kept in self.seen.items()]
        self.weights: dict[str, torch.Tensor] = {}
        self.accum: dict[str, torch.Tensor] = {}
        self.velocity: dict[str, torch.Tensor | None] = {}
        self.owner: dict[str, LevelDef] = {}
        # Stream weights are base + delta: base is the module's parameter W0 (the outer level
        # trains it through this sum), delta the detached in-context change.
        self.base: dict[str, torch.Tensor] = {}
        self.delta: dict[str, torch.Tensor] = {}
        for lv in self.levels:
            for name, p in owned_parameters(model, lv).items():
                self.owner[name] = lv
                if lv.lifetime == "sequence":
                    # One copy per sequence; expand keeps the path back to the initial state.
                    self.weights[name] = p.unsqueeze(0).expand(batch, *p.shape)
                    self.accum[name] = torch.zeros(batch, *p.shape, dtype=p.dtype,
                                                   device=p.device)
                    self.velocity[name] = None
                else:
                    self.base[name] = p if differentiable else p.detach()
                    self.delta[name] = stream.weights[name].to(p.device, p.dtype).detach()
                    self.weights[name] = self._stream_weight(name)
                    self.accum[name] = stream.accum[name].to(p.device, p.dtype, copy=True)
                    v = stream.velocity.get(name)
                    self.velocity[name] = None if v is None else v.to(p.device, p.dtype)
        # Nested CMS: a slower level's in-context copy of a faster block's initial state, and
        # the signal it learns it from (the faster block's gradients since its last reset).
        self.resets = {lv.name: list(parameters_under(model, lv.resets)) for lv in self.levels
                       if lv.resets}
        self.init = {n: self.weights[n] for names in self.resets.values() for n in names}
        self.init_accum = {n: torch.zeros_like(self.accum[n]) for n in self.init}
        # Such a level's weight -> the module whose outputs it reaches the loss through.
        self.module_of = {n: path for path in self.seen for n in self.owner
                          if n.startswith(path + ".")}
        if carry is not None and carry.fast:
            self._load(carry.fast)

    def _stream_weight(self, name: str) -> torch.Tensor:
        w = self.base[name] + self.delta[name]
        # Without a path to W0 the inner gradient still needs a leaf to differentiate.
        return w if w.requires_grad else w.requires_grad_(True)

    def _load(self, saved: dict) -> None:
        """Continue from a carried state (sequence-lifetime weights only)."""
        for table in ("weights", "accum", "velocity", "init", "init_accum"):
            mine = getattr(self, table)
            for n, t in saved[table].items():
                mine[n] = None if t is None else t.detach().requires_grad_(table == "weights")

    def carried(self) -> dict:
        """The sequence-lifetime state, detached, for a `Carry`."""
        def keep(table):
            return {n: None if t is None else t.detach() for n, t in table.items()
                    if self.owner[n].lifetime == "sequence"}
        return {t: keep(getattr(self, t)) for t in
                ("weights", "accum", "velocity", "init", "init_accum")}

    def names(self) -> list[str]:
        return list(self.weights)

    def chunk_inputs(self, cache: dict) -> dict[str, torch.Tensor]:
        """Fresh aliases of the fast weights for one chunk.

        Eq. 71 takes each level's gradient with everything else held as it is (a partial
        derivative). Differentiating with respect to a per-chunk alias, rather than the weight
        itself, keeps out the paths through earlier in-context updates that the weight also
        influenced; the outer backward still sees every path through the alias.

        Each alias also adds an exact zero that depends on everything carried into the chunk
        (`_horizon`). Its value and its gradients are unchanged, but it places the alias after
        every earlier node in autograd's topological order, and autograd's backward skips nodes
        that come before all of its inputs: each chunk's inner gradient then walks only the
        chunk's own graph instead of the whole sequence's, which kept the cost per token
        growing with the sequence length.
        """
        if not self.levels:
            return {}
        horizon = _horizon([*self.weights.values(), *cache.values()])
        if horizon is None:
            return {n: w.view_as(w) for n, w in self.weights.items()}
        return {n: w + horizon for n, w in self.weights.items()}

    def close(self) -> None:
        """Remove the hooks that keep the modules' inputs and outputs."""
        for hook in self._hooks:
            hook.remove()

    def new_chunk(self) -> None:
        for kept in self.seen.values():
            kept.clear()

    def accumulate(self, loss_sum: torch.Tensor, inputs: dict[str, torch.Tensor],
                   batch: int, names: list[str]) -> None:
        """Add d(chunk loss)/d(fast weights) to the accumulators of ``names`` (Eq. 71)."""
        if not names:
            return
        through = [n for n in names if n in self.module_of]
        whole = [n for n in names if n not in self.module_of]
        grads = dict(zip(whole, torch.autograd.grad(
            loss_sum, [inputs[n] for n in whole], retain_graph=True,
            create_graph=self.second_order, allow_unused=True), strict=True)) if whole else {}
        if through:
            grads.update(self._through_outputs(loss_sum, inputs, through))
        for n in names:
            g = grads[n]
            if g is None:
                continue
            lv = self.owner[n]
            if lv.lifetime == "stream":
                # Shared by all lanes: the signal is the lanes' mean, and it never carries graph.
                g = g.detach() / batch
            elif lv.meta == "first_order" or not self.differentiable:
                g = g.detach()
            self.accum[n] = self.accum[n] + g
            if n in self.init_accum:
                self.init_accum[n] = self.init_accum[n] + g

    def _through_outputs(self, loss_sum: torch.Tensor, inputs: dict[str, torch.Tensor],
                         names: list[str]) -> dict[str, torch.Tensor | None]:
        """The gradients of a full backward, taken in two steps: the error at each module's
        outputs, then back through the module alone (exact, as a weight reaches the loss only
        through its own module's outputs). Module by module, so that a module downstream of
        another (a sequential chain) does not pass its error back into the first one's
        weights a second time.

        * A truncated level holds the error fixed: it is taken without a graph, and the
          update is differentiable only through the module.
        * A level with data-dependent step sizes weights the error at token ``t`` by
          ``sigmoid(r·h_t + b)`` (Eq. 71's ``η_t``): the sum over the chunk of each token's
          gradient through the module, weighted. Its error keeps its graph when the level is
          second order; the weighting always does, so the outer level learns the read-out
          through the update.
        """
        paths = [p for p in dict.fromkeys(self.module_of[n] for n in names) if self.seen[p]]
        graph = {p: self.differentiable and self.level_at[p].meta == "second_order"
                 for p in paths}
        outs = [out for p in paths for _, out in self.seen[p]]
        errors = torch.autograd.grad(loss_sum, outs, retain_graph=True,
                                     create_graph=any(graph.values()), allow_unused=True)
        errors = [torch.zeros_like(o) if e is None else e for o, e in zip(outs, errors,
                                                                           strict=True)]
        found: dict[str, torch.Tensor | None] = {}
        for p in paths:
            kept = self.seen[p]
            error, errors = errors[:len(kept)], errors[len(kept):]
            if not graph[p]:
                error = [e.detach() for e in error]
            if p in self.rate_of:
                error = [torch.sigmoid(self.rate_of[p](h)) * e
                         for (h, _), e in zip(kept, error, strict=True)]
            mine = [n for n in names if self.module_of[n] == p]
            found.update(zip(mine, torch.autograd.grad(
                [out for _, out in kept], [inputs[n] for n in mine], error,
                retain_graph=True, create_graph=self.differentiable, allow_unused=True),
                strict=True))
        return {n: found.get(n) for n in names}

    def update(self, lv: LevelDef) -> None:
        """Apply the level's rule to its accumulated gradient, then clear the accumulator."""
        assert isinstance(lv.rule, GDRule)
        for n in [n for n in self.names() if self.owner[n] is lv]:
            if lv.lifetime == "stream":
                self._update_stream(lv, n)
                continue
            new, self.velocity[n] = gd_step(lv.rule, self.weights[n], self.accum[n],
                                            self.velocity[n], batched=True)
            if not self.differentiable:
                new = new.detach().requires_grad_(True)
            self.weights[n] = new
            self.accum[n] = torch.zeros_like(self.accum[n])
        for n in self.resets.get(lv.name, ()):
            self._reset(lv, n)

    def _update_stream(self, lv: LevelDef, n: str) -> None:
        """Step Δ (never W0): weight decay pulls Δ back to 0, i.e. the weight back to the
        trained W0, the state "reset" returns to."""
        signal = self.accum[n] if self.reduce_stream is None else self.reduce_stream(self.accum[n])
        new, self.velocity[n] = gd_step(lv.rule, self.delta[n], signal, self.velocity[n],
                                        batched=False)
        self.delta[n] = new.detach()
        self.weights[n] = self._stream_weight(n)
        self.accum[n] = torch.zeros_like(self.accum[n])

    def _reset(self, lv: LevelDef, n: str) -> None:
        """Nested CMS: step the faster block's initial state by this level's rule on the block's
        summed gradients since its last reset (a first-order meta-gradient), then restart the
        block from it."""
        init, _ = gd_step(lv.rule, self.init[n], self.init_accum[n], None, batched=True)
        if not self.differentiable:
            init = init.detach().requires_grad_(True)
        self.init[n] = self.weights[n] = init
        self.init_accum[n] = torch.zeros_like(self.init_accum[n])
        self.accum[n] = torch.zeros_like(self.accum[n])
        self.velocity[n] = None

    def store_stream(self) -> None:
        if not self.learn_stream:
            return
        for n in self.delta:
            self.stream.weights[n] = self.delta[n].detach().clone()
            self.stream.accum[n] = self.accum[n].detach().clone()
            if self.velocity[n] is not None:
                self.stream.velocity[n] = self.velocity[n].detach().clone()


def _keep_io(kept: list, module, args, output) -> None:
    kept.append((args[0], output))


def _horizon(carried) -> torch.Tensor | None:
    """A scalar zero that depends on every tensor in `carried` (nested in tuples and dicts)
    that has a history, or None when none has."""
    tensors, stack = [], list(carried)
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            if item.grad_fn is not None:
                tensors.append(item)
        elif isinstance(item, tuple | list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    if not tensors:
        return None
    # A sum of one element from each (indexed, never copied): as deep in the graph as the
    # tensor, and cheap.
    first = [t[(0,) * t.dim()].to(tensors[0].dtype) for t in tensors]
    return torch.stack(first).sum() * 0
