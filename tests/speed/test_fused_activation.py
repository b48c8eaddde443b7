"""The fused SELU/ELU loops give torch's separate ops' values (kernels/fused_activation.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deeprec.kernels import fused_activation

_aten = torch.ops.aten
PARAMS = {"selu": (1.6732632423543772848170429916717, 1.0507009873554804934193349852946)}
PARAMS["elu"] = (1.0, 1.0)


@pytest.fixture(autouse=True)
def _built():
    if fused_activation.kernels() is None:
        pytest.skip("no AVX-512 or no C++ compiler: the fused loops are not built here")


def _tiles(rows: int, cols: int, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    product = (torch.randn(rows, cols, generator=gen) * 2).to(dtype)
    bias = torch.randn(cols, generator=gen) * 0.3
    noise = (torch.rand(rows, cols, generator=gen) < 0.2).float().div_(0.2)
    return product, bias, noise


@pytest.mark.parametrize("activation", ["selu", "elu"])
@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (7, 37), (128, 512), (16, 1024)])
@pytest.mark.parametrize("product_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("with_noise", [True, False])
def test_forward_equals_torch(
    activation, shape, product_dtype, out_dtype, with_bias, with_noise
) -> None:
    """Bit for bit where torch's own kernel runs all its elements vectorised (a multiple of
    16); torch computes a shorter tail with scalar expm1, which may differ in the last bit."""
    product, bias, noise = _tiles(*shape, product_dtype)
    bias = bias if with_bias else None
    noise = noise if with_noise else None
    z = product.float() if bias is None else torch.add(bias, product)
    want_y = F.selu(z) if activation == "selu" else F.elu(z)
    want_h = (want_y if noise is None else want_y * noise).to(out_dtype)
    assert fused_activation.supports(activation, product)
    y, h = fused_activation.forward(activation, product, bias, noise, out_dtype)
    assert y.dtype == torch.float32 and h.dtype == out_dtype
    if y.numel() % 16 == 0:
        assert torch.equal(y, want_y)
        assert torch.equal(h, want_h)
    torch.testing.assert_close(y, want_y, rtol=1e-6, atol=1e-7)
    tol = 1e-6 if out_dtype == torch.float32 else 8e-3  # one bf16 rounding step
    torch.testing.assert_close(h, want_h, rtol=tol, atol=tol * 1e-1)
    if noise is None and out_dtype == torch.float32:
        assert h is y  # nothing to write twice


@pytest.mark.parametrize("activation", ["selu", "elu"])
@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (7, 37), (128, 512), (16, 1024)])
@pytest.mark.parametrize("grad_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_noise", [True, False])
def test_backward_equals_torch(activation, shape, grad_dtype, out_dtype, with_noise) -> None:
    product, _, noise = _tiles(*shape, torch.float32, seed=1)
    noise = noise if with_noise else None
    y = F.selu(product) if activation == "selu" else F.elu(product)
    grad = torch.randn(*shape, generator=torch.Generator().manual_seed(2)).to(grad_dtype)
    g = grad.float() if noise is None else grad * noise
    alpha, scale = PARAMS[activation]
    want = _aten.elu_backward(g, alpha, scale, 1, True, y)
    gz, bias_grad = fused_activation.backward(activation, grad, noise, y, out_dtype)
    assert gz.dtype == out_dtype and bias_grad.dtype == torch.float32
    if gz.numel() % 16 == 0:
        assert torch.equal(gz, want.to(out_dtype))
    tol = 1e-6 if out_dtype == torch.float32 else 8e-3
    torch.testing.assert_close(gz, want.to(out_dtype), rtol=tol, atol=tol * 1e-1)
    # the column sums of the fp32 gz (before any bf16 rounding), summed in another order
    torch.testing.assert_close(bias_grad, want.sum(0), rtol=1e-5, atol=1e-5)


def test_other_activations_and_tensors_are_not_taken() -> None:
    tile = torch.zeros(4, 8)
    assert not fused_activation.supports("relu", tile)
    assert not fused_activation.supports("selu", tile.double())
    assert not fused_activation.supports("selu", tile.t())  # strided
    assert not fused_activation.supports("selu", tile[0])  # 1-D
    with pytest.raises(ValueError, match="contiguous fp32"):
        fused_activation.forward("selu", tile, torch.zeros(8).double(), None, torch.float32)


def _one_step(precision: str, refeed: int, constrained: bool):
    """One fast step from fixed weights and seed; returns the updated parameters."""
    import numpy as np

    from deeprec.data.batching import row_batch
    from deeprec.model.autoencoder import AutoEncoder
    from deeprec.step.fast import FastStep

    from .test_fast_equivalence import random_matrix

    torch.manual_seed(3)
    model = AutoEncoder(random_matrix(0).shape[1], [32, 16], constrained=constrained, dropout=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    step = FastStep(model, optimizer, precision=precision, refeed_steps=refeed)
    batch = row_batch(random_matrix(0), np.arange(12))
    torch.manual_seed(11)
    result = step(batch)
    return result.loss, {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize(
    ("precision", "refeed", "constrained"),
    [
        ("fp32", 0, False),
        ("fp32", 1, True),
        ("bf16", 0, False),
        ("bf16", 1, False),
        ("bf16", 0, True),
    ],
)
def test_a_fast_step_with_the_fused_loops_matches_one_without(
    monkeypatch, precision, refeed, constrained
) -> None:
    """The whole step (every hidden layer, forward and backward, sparse and re-fed inputs)
    with the loops really taken gives the separate ops' loss and updated weights."""
    built = fused_activation.kernels()
    calls = []

    def spying():
        calls.append(True)
        return built

    monkeypatch.setattr(fused_activation, "kernels", spying)
    fused_loss, fused = _one_step(precision, refeed, constrained)
    assert calls
    monkeypatch.setattr(fused_activation, "kernels", lambda: None)
    plain_loss, plain = _one_step(precision, refeed, constrained)
    assert fused_loss == pytest.approx(plain_loss, rel=1e-5)
    for name in plain:  # bf16: the bias-gradient sums' order can flip a bf16 rounding
        tol = 1e-5 if precision == "fp32" else 1e-3
        torch.testing.assert_close(fused[name], plain[name], rtol=tol, atol=tol, msg=name)
