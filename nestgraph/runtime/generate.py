"""Sampling from a trained run, with the in-context levels still learning as they read.

The context is re-read for every new byte (at most `seq_len` bytes of it), so every in-context
level sees exactly what it would see in training: the same chunking, the same updates at the
same positions. That costs a forward pass per byte, which is fine for the short samples this is
for, and never lets sampling and training disagree.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from nestgraph.runtime.engine import StreamState, in_context_levels, read_sequence
from nestgraph.runtime.levels import LevelDef
from nestgraph.runtime.threads import apply_threads


def sample(model: torch.nn.Module, schedule: tuple[LevelDef, ...], stream: StreamState,
           prompt: bytes, *, tokens: int, seq_len: int, temperature: float = 0.8,
           seed: int = 0, bf16: bool = False, threads: int | str = "auto") -> bytes:
    """`tokens` bytes after `prompt`; `threads` is ``train.threads`` (see runtime.threads)."""
    apply_threads(threads)
    generator = torch.Generator().manual_seed(seed)
    context = list(prompt) or [10]  # an empty prompt starts from a newline
    learning = bool(in_context_levels(schedule))
    for _ in range(tokens):
        window = torch.tensor([context[-seq_len:]], dtype=torch.long)
        targets = torch.cat([window[:, 1:], torch.full((1, 1), -1)], dim=1)
        precision = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        with torch.enable_grad() if learning else torch.no_grad(), precision:
            out = read_sequence(model, schedule, window, targets, stream, learn_stream=False,
                                differentiable=False, keep_logits=True)
        logits = out.logits[0, -1].detach().float()
        if temperature <= 0:
            nxt = int(logits.argmax())
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=generator))
        context.append(nxt)
    return bytes(context[len(prompt):]) if prompt else bytes(context[1:])
