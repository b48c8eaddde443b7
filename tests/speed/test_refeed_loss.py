"""The re-feed pass's fused loss gradient (kernels/refeed_loss.py) gives the eager ops' values,
and a fast step that uses it keeps the reference math."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from deeprec.data.batching import row_batch
from deeprec.kernels import refeed_loss
from deeprec.model.autoencoder import AutoEncoder
from deeprec.step.fast import FastStep

from .batches import random_batch
from .test_fast_equivalence import assert_same, make_models, random_matrix, run_both


@pytest.fixture
def compile_every_size(monkeypatch, fresh_compiled_kernels):
    """Test outputs are narrow and would take the eager ops (MIN_COLUMNS): compile them."""
    monkeypatch.setattr(refeed_loss, "MIN_COLUMNS", 1)


def _eager(product, bias, y, keep_out):
    out = product if bias is None else bias + product.to(y.dtype)
    g = (out - y).mul_(2.0 / out.numel())
    return out, g.sum(0), g


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("keep_out", [True, False])
def test_compiled_gradient_equals_the_eager_ops(compile_every_size, dtype, keep_out) -> None:
    gen = torch.Generator().manual_seed(0)
    product = torch.randn(9, 70, generator=gen, dtype=torch.float64).to(dtype)
    y = torch.randn(9, 70, generator=gen, dtype=torch.float64).to(dtype)
    out, bias_grad, g = refeed_loss.refeed_gradient(product, None, y, keep_out=keep_out, low=None)
    want_out, want_bias, want_g = _eager(product, None, y, keep_out)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert (out is not None) == keep_out
    if keep_out:
        assert torch.equal(out, want_out)
    torch.testing.assert_close(g, want_g, rtol=tol, atol=tol)
    torch.testing.assert_close(bias_grad, want_bias, rtol=tol, atol=tol)
    assert not refeed_loss.KERNEL.failed


def test_bf16_product_gets_its_bias_and_a_bf16_gradient(compile_every_size) -> None:
    gen = torch.Generator().manual_seed(1)
    product = torch.randn(9, 70, generator=gen).bfloat16()
    bias = torch.randn(70, generator=gen)
    y = torch.randn(9, 70, generator=gen)
    out, bias_grad, g = refeed_loss.refeed_gradient(
        product, bias, y, keep_out=True, low=torch.bfloat16
    )
    want_out, want_bias, want_g = _eager(product, bias, y, True)
    assert out.dtype == torch.float32 and g.dtype == torch.bfloat16
    torch.testing.assert_close(out, want_out, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(bias_grad, want_bias, rtol=1e-5, atol=1e-6)  # from fp32 g
    assert torch.equal(g, want_g.bfloat16())


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("refeed", [1, 2])
def test_fast_step_with_the_compiled_gradient_matches_reference(
    compile_every_size, constrained: bool, refeed: int
) -> None:
    """float64, tight tolerance: two re-feed steps cover the kept f(y) (the second pass's
    input) and the discarded one."""
    batch = row_batch(random_matrix(1), np.arange(10))
    ref, fast = make_models(constrained)
    r, f = run_both(ref, fast, batch, refeed=refeed, strategy="sparse")
    assert_same(ref, fast, r, f)


def test_bf16_step_with_the_compiled_gradient_tracks_the_eager_one(monkeypatch) -> None:
    torch.manual_seed(0)
    model = AutoEncoder(60, [16, 8], activation="selu", dropout=0.0)
    twin = copy.deepcopy(model)
    batch = random_batch(32, 60, seed=1)
    losses = []
    for m, columns in ((model, 1), (twin, 10**9)):  # compiled / eager
        monkeypatch.setattr(refeed_loss, "MIN_COLUMNS", columns)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        step = FastStep(m, opt, precision="bf16", refeed_steps=2, output_strategy="sparse")
        losses.append([step(batch).loss for _ in range(3)])
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    for (name, a), (_, b) in zip(model.named_parameters(), twin.named_parameters(), strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-3, atol=1e-4, msg=name)
