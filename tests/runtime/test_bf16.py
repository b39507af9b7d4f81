"""bf16 autocast trains like fp32: the same 50 steps, loss by loss, within 0.02 nats (seen:
under 0.002), with fp32 master weights and norms that stay on the fused kernel."""

from __future__ import annotations

import warnings

import pytest
import torch

from nestgraph.runtime.layers.core import RMSNorm
from nestgraph.testing import SMALL_CMS, train_records

TOLERANCE = 0.02  # nats, at every one of the 50 steps
SMALL_HOPE = ("model.dim=32", "train.batch=2", "train.seq_len=128", "levels.cms_mid.every=64 tokens",
              "levels.cms_slow.every=256 tokens", "train.eval_batches=1", "train.eval_every=0",
              "data.max_bytes=200000")


@pytest.mark.parametrize(("spec", "overrides"), [
    pytest.param("cms", SMALL_CMS, id="cms"),
    pytest.param("hope", SMALL_HOPE, id="hope", marks=pytest.mark.slow),
])
def test_bf16_and_fp32_loss_curves_agree_over_50_steps(tmp_path, spec, overrides):
    curves = {}
    for precision in ("fp32", "bf16"):
        records = train_records(tmp_path / precision, spec,
                                [*overrides, "train.log_every=1", f"train.precision={precision}"],
                                50)
        curves[precision] = [r["loss"] for r in records if "loss" in r]
    fp32, bf16 = curves["fp32"], curves["bf16"]
    assert len(fp32) == len(bf16) == 50
    gaps = [abs(a - b) for a, b in zip(fp32, bf16, strict=True)]
    assert max(gaps) < TOLERANCE, max(gaps)
    assert max(gaps) > 0  # bf16 really ran: its rounding shows
    assert bf16[-1] < bf16[0] - 0.5  # and it learned


def test_rms_norm_under_autocast_keeps_one_dtype_and_fp32_weights():
    norm = RMSNorm(8, eps=1e-6)
    x = torch.randn(2, 8, dtype=torch.bfloat16, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the unfused fallback warns about the dtype mismatch
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = norm(x)
    assert y.dtype == torch.bfloat16 and norm.weight.dtype == torch.float32
    y.float().sum().backward()
    assert norm.weight.grad is not None and norm.weight.grad.dtype == torch.float32
    reference = torch.nn.functional.rms_norm(x.float(), (8,), norm.weight, 1e-6)
    torch.testing.assert_close(y.float(), reference, rtol=2e-2, atol=2e-2)
