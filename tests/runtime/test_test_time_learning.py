"""Test-time learning: a trained Hope learns from the sequence it is reading, in evaluation too.

A small Hope (one layer, width 32, its fast CMS block taking a larger in-context step than the
shipped default) is meta-trained for 60 steps on random byte strings each written twice. Read
the way evaluation and `nestgraph generate` read (no graph, stream untouched), a fresh random
string's second copy is then predicted far better than its first, and far better than with
in-context learning switched off: what the first copy taught the in-context levels is used
while reading the second. About 10 s.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nestgraph.runtime.engine import init_stream, read_sequence
from nestgraph.runtime.levels import owned_parameters
from nestgraph.runtime.program import load_program
from nestgraph.testing import compile_build

HALF = 16  # bytes in each copy


def repeated_strings(batch: int, generator: torch.Generator) -> torch.Tensor:
    s = torch.randint(0, 256, (batch, HALF), generator=generator)
    return torch.cat([s, s], dim=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    program = load_program(compile_build(tmp_path_factory.mktemp("hope") / "build", "hope", [
        "model.dim=32", "model.layers=1", f"train.seq_len={2 * HALF}",
        "levels.memory.every=8 tokens", "levels.memory.rule.max_lr=0.1",
        "levels.cms_fast.every=8 tokens", "levels.cms_fast.rule.lr=0.5",
        "levels.cms_fast.rule.clip=0", f"levels.cms_mid.every={HALF} tokens",
        f"levels.cms_slow.every={8 * HALF} tokens"]))
    torch.manual_seed(0)
    model, levels = program.build_model(), program.schedule
    stream = init_stream(model, levels)
    shared = {n for lv in levels if lv.lifetime == "stream" for n in owned_parameters(model, lv)}
    params = [p for n, p in model.named_parameters() if n not in shared]
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    for _ in range(60):
        x = repeated_strings(16, g)
        loss = read_sequence(model, levels, x[:, :-1], x[:, 1:], stream).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, levels, stream


def per_token_loss(trained, x: torch.Tensor, in_context: bool) -> torch.Tensor:
    model, levels, stream = trained
    before = {n: w.clone() for n, w in stream.weights.items()}
    result = read_sequence(model, levels, x[:, :-1], x[:, 1:], stream, learn_stream=False,
                           differentiable=False, keep_logits=True, in_context=in_context)
    assert all(torch.equal(before[n], stream.weights[n]) for n in before)  # stream untouched
    return F.cross_entropy(result.logits.flatten(0, 1), x[:, 1:].flatten(),
                           reduction="none").view(x.shape[0], -1).detach()


def test_second_copy_is_predicted_from_what_the_first_taught(trained):
    x = repeated_strings(64, torch.Generator().manual_seed(99))
    learning = per_token_loss(trained, x, in_context=True)
    frozen = per_token_loss(trained, x, in_context=False)
    # Targets 0..14 are bytes of the first copy (unpredictable); 16.. repeat it.
    first, second = learning[:, : HALF - 1].mean(), learning[:, HALF:].mean()
    assert second < 0.75 * first
    assert second < 0.75 * frozen[:, HALF:].mean()
    # Without in-context learning the two copies look alike to the model.
    assert abs(frozen[:, HALF:].mean() - frozen[:, : HALF - 1].mean()) < 0.1
