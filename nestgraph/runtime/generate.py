"""Sampling from a trained run, with the in-context levels learning as they read.

The context is read in windows of ``seq_len`` with the state carried (`engine.Carry`): each
full window is read once and committed, and every new byte re-reads only the current partial
window from the last committed state, never the whole context. A window is committed once all
its targets are known, so every in-context level sees the same chunks, gradients and update
positions as one read of the whole context would give it.

Stream-lifetime levels are switched off unless ``learn`` is set; with it they keep learning
from the committed windows (test-time learning) and the caller's stream is changed in place
(``nestgraph generate --learn --save-state FILE`` keeps what they learned).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from nestgraph.runtime.levels import LevelDef
from nestgraph.runtime.reader import prepare_stream, read_window
from nestgraph.runtime.stream import Carry, StreamState
from nestgraph.runtime.train.threads import apply_threads
from nestgraph.runtime.train.tokenizer import ByteTokens


class _Reader:
    """The committed state of a context being read, and the reads that extend it."""

    def __init__(self, model, schedule, stream, seq_len, learn, bf16):
        self.model, self.schedule, self.seq_len, self.bf16 = model, schedule, seq_len, bf16
        self.learn = learn
        self.stream, self.off = prepare_stream(model, schedule, stream, learn, frozenset(),
                                               frozenset())
        self.carry, self.done = Carry(), 0  # committed state, and the tokens it has read

    def next_logits(self, context: list[int]) -> torch.Tensor:
        """Logits for the token after `context`; commits every window whose targets are known."""
        while len(context) - self.done > self.seq_len:
            window = context[self.done:self.done + self.seq_len + 1]
            self.carry = self._read(window[:-1], window[1:], self.carry, commit=True).carry
            self.done += self.seq_len
        part = context[self.done:]
        out = self._read(part, part[1:] + [-1], self.carry, commit=False)
        return out.logits[0, -1].detach().float()

    def _read(self, x, y, carry, commit):
        precision = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with precision:
            return read_window(self.model, self.schedule, torch.tensor([x]), torch.tensor([y]),
                               self.stream, carry, learn_stream=self.learn and commit,
                               off=self.off, attention_window=self.seq_len)


def sample(model: torch.nn.Module, schedule: tuple[LevelDef, ...], stream: StreamState,
           prompt: bytes, *, tokens: int, seq_len: int, temperature: float = 0.8,
           seed: int = 0, bf16: bool = False, threads: int | str = "auto",
           learn: bool = False, tokenizer=None) -> bytes:
    """The bytes of `tokens` tokens after `prompt`; `threads` is ``train.threads`` (see
    runtime.threads). `tokenizer` (`runtime.train.tokenizer`; default: bytes) encodes the
    prompt and decodes what is sampled."""
    apply_threads(threads)
    generator = torch.Generator().manual_seed(seed)
    tokenizer = tokenizer or ByteTokens()
    start = tokenizer.encode(prompt, "the prompt").tolist()
    prompted = bool(start)
    context = start if prompted else tokenizer.encode(b"\n").tolist()  # or from a newline
    first = len(context)
    reader = _Reader(model, schedule, stream, seq_len, learn, bf16)
    for _ in range(tokens):
        logits = reader.next_logits(context)
        if temperature <= 0:
            nxt = int(logits.argmax())
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=generator))
        context.append(nxt)
    return tokenizer.decode(context[first:])
