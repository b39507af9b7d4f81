"""Titans' MAC, memory as context (Titans §4.1): attention over the memory's recollection.

The sequence is cut into segments of ``segment`` tokens. For segment ``S`` (the memory ``M``
as the previous segments left it):

1. retrieve: ``h = M(q(S))``, the memory read at the segment's own queries, without writing;
2. attend: ``y = Attn([persistent ‖ h ‖ S])``, one causal softmax attention over the segment
   and its recollection, the persistent tokens seen by every query;
3. write: the memory learns from ``y`` (its keys, values and rates are projections of ``y``),
   chunk by chunk, by the rule of the level that owns ``NAME.memory``;
4. gate: ``out = norm(y) * sigmoid(norm(M(q(y))))``.

Choices where the paper leaves room, each so that the layer stays causal:

* Attention is causal over the recollection too: query ``i`` sees ``h_j`` only for ``j <= i``
  (``h_j`` is read at ``x_j``'s query, so a later one would leak ``x_j``). ``h_j`` and ``x_j``
  share segment position ``j`` for the rotary embedding.
* The paper gates with ``M*(y)`` after writing the whole segment, which would let token ``i``
  read writes from the segment's later tokens. Here the gate reads as every Titans memory
  does: each memory chunk reads the state at its start (with a chunk of one token, the state
  before the token), so a segment of one memory chunk gates with the segment's start state.
* The retrieved tokens go through the memory's own output map (normalised per head, then the
  output projection) into the model's width, where attention projects them like any token.
* Nothing of a segment is seen by the next one except through the memory: attention is
  within the segment only, as in the paper (the segment is MAC's window). The compiler keeps
  the segment shorter than ``train.seq_len``, so the reader's own limit on attention (the
  last ``seq_len`` keys, for long reads) never binds, and a sequence always reaches a recall
  of what it wrote.

Reading a sequence in several calls, the layer carries the running memory, its state at the
segment's start, the segment's keys and values so far and both convolution tails in the cache;
a call may end anywhere on a memory-chunk boundary (the engine's calls always do: the compiler
checks it), and the calls compute what one call over the whole sequence would.
The loop runs over segments (a handful per sequence), never over tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from nestgraph.runtime.layers.core import Attention, RMSNorm, rope
from nestgraph.runtime.layers.titans import NeuralMemory
from nestgraph.runtime.ops.memory import memory_read


class MemoryAsContext(nn.Module):
    takes_cache = True

    def __init__(self, attn: Attention, mem: NeuralMemory, segment: int) -> None:
        super().__init__()
        if attn.window:
            raise ValueError("MAC's attention is over its segment: give it no window")
        self.attn, self.mem, self.segment = attn, mem, segment
        self.norms = nn.ModuleDict({"attn": RMSNorm(mem.dim, eps=1e-6),
                                    "mem": RMSNorm(mem.dim, eps=1e-6)})

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        state = cache.get(id(self)) if cache is not None else None
        state = dict(state) if state is not None else self._fresh(x.shape[0])
        if self.segment % self.mem.chunk:
            raise ValueError(f"the memory's chunk {self.mem.chunk} does not divide MAC's "
                             f"segment {self.segment}")
        outs, pos = [], 0
        while pos < x.shape[1]:  # one piece per segment the call touches
            n = min(self.segment - state["filled"], x.shape[1] - pos)
            outs.append(self._piece(x[:, pos:pos + n], state, cache))
            pos += n
        if cache is not None:
            cache[id(self)] = state
        return torch.cat(outs, dim=1)

    def _fresh(self, batch: int) -> dict:
        weights = self.mem.memory.expand(batch)
        return {"weights": weights, "momentum": None, "start": weights, "filled": 0,
                "keys": None, "values": None, "positions": None,
                "tails": (None, None)}

    def _piece(self, x: torch.Tensor, state: dict, cache: dict | None) -> torch.Tensor:
        """Tokens ``filled .. filled + n`` of the current segment."""
        mem, (x_tail, y_tail) = self.mem, state["tails"]
        q, x_tail = mem.queries(x, x_tail)  # the recall needs no keys or values
        recalled = mem.proj.out(mem.merge(memory_read(mem.kind, state["start"], q)))
        y = self._attend(recalled, x, state, cache)
        (q, k, v), y_tail = mem.project(y, y_tail)
        read, state["weights"], state["momentum"] = mem.write_and_read(
            y, q, k, v, state["weights"], state["momentum"], cache)
        state["tails"] = (x_tail, y_tail)
        state["filled"] += x.shape[1]
        if state["filled"] == self.segment:  # the next segment recalls what this one wrote
            state.update(start=state["weights"], filled=0, keys=None, values=None,
                         positions=None)
        gate = self.norms["mem"](mem.proj.out(mem.merge(read)))
        return self.norms["attn"](y) * torch.sigmoid(gate)

    def _attend(self, recalled: torch.Tensor, x: torch.Tensor, state: dict,
                cache: dict | None) -> torch.Tensor:
        """Causal attention of the piece's tokens over the segment so far: its recollection
        and its tokens, position by position, behind the persistent tokens."""
        attn, (b, n, d) = self.attn, x.shape
        heads, first = attn.heads, state["filled"]
        qkv = attn.qkv(torch.cat([recalled, x], dim=1))
        q, k, v = qkv.view(b, 2 * n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        q = q[:, :, n:]  # queries come from the segment's tokens only
        if attn.use_rope:  # h_j and x_j both at segment position j: one call for both halves
            q = rope(q, first, attn.rope_base)
            k = rope(k.unflatten(2, (2, n)), first, attn.rope_base).flatten(2, 3)
        # Each piece's keys are its recollection, then its tokens, at their segment positions.
        kpos = torch.arange(first, first + n, device=x.device).repeat(2)
        if state["keys"] is not None:
            k, v = torch.cat([state["keys"], k], dim=2), torch.cat([state["values"], v], dim=2)
            kpos = torch.cat([state["positions"], kpos])
        state.update(keys=k, values=v, positions=kpos)
        mask = kpos[None, :] <= torch.arange(first, first + n, device=x.device)[:, None]
        return attn.attend(q, k, v, mask, cache)
