"""The fast dropout draw gives F.dropout's mask bit for bit and leaves the generator where
F.dropout leaves it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deeprec.kernels.dropout_noise import dropout_noise


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("drop", [0.8, 0.5, 0.1, 0.37])
def test_noise_equals_f_dropout_draws(dtype: torch.dtype, drop: float) -> None:
    ones = torch.ones(64, 300, dtype=dtype)
    torch.manual_seed(7)
    want = F.dropout(ones, p=drop, training=True)
    after_want = torch.rand(5)
    torch.manual_seed(7)
    got = dropout_noise(ones, drop)
    after_got = torch.rand(5)
    assert got.dtype == dtype
    assert torch.equal(got, want)
    assert torch.equal(after_got, after_want)  # same generator state afterwards
    kept = (got != 0).double().mean().item()
    assert kept == pytest.approx(1 - drop, abs=0.02)
