"""kernels.switch: every kernel can be switched off, and a fast step on the fallbacks alone
computes the same step (fp32: within the fp32 error bound of the kernels' step and of the
reference step)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from deeprec.data.batching import row_batch
from deeprec.kernels import (
    KERNELS,
    cpu_gemm,
    disabled,
    enabled,
    gather_dot,
    mirrored_sgd,
    refeed_loss,
    status,
)
from deeprec.model.autoencoder import AutoEncoder
from deeprec.step.fast import FastStep
from deeprec.step.reference import reference_step

from .fp32_bound import assert_close_normwise, chain_length
from .test_fast_equivalence import random_matrix


@pytest.fixture(autouse=True)
def kernels_at_every_size(monkeypatch):
    """Tiny test models would stay on the eager paths by size: take the kernels anyway."""
    monkeypatch.setattr(gather_dot, "MIN_WEIGHTS", 1)
    monkeypatch.setattr(refeed_loss, "MIN_COLUMNS", 1)
    monkeypatch.setattr(mirrored_sgd, "MIN_NUMEL", 1)


def test_disabled_switches_off_and_back_on() -> None:
    assert set(status()) == set(KERNELS)
    with disabled("gather_dot"):
        assert not enabled("gather_dot") and enabled("onednn_linear")
        with disabled():
            assert not any(status().values())
        assert not enabled("gather_dot") and enabled("refeed_loss")
    assert all(enabled(name) for name in KERNELS)
    with pytest.raises(ValueError, match="unknown kernel"), disabled("blas"):
        pass


def test_switched_off_kernels_are_never_built_or_called(monkeypatch) -> None:
    def forbidden():
        raise AssertionError("a switched-off kernel was built")

    monkeypatch.setattr(gather_dot, "_build", forbidden)
    monkeypatch.setattr(cpu_gemm.torch.ops.mkldnn, "_linear_pointwise", forbidden, raising=False)
    for kernel in (gather_dot.KERNEL, refeed_loss.KERNEL, mirrored_sgd.UPDATE_KERNEL):
        monkeypatch.setattr(kernel, "compiled", forbidden)
    with disabled():
        for precision, refeed in (("fp32", 0), ("fp32", 1), ("bf16", 0), ("bf16", 1)):
            _steps(precision, refeed)


def _steps(precision: str, refeed: int, model: AutoEncoder | None = None):
    """Two fast steps (SELU, dropout, momentum SGD) from fixed weights and seed."""
    if model is None:
        torch.manual_seed(3)
        model = AutoEncoder(random_matrix(0).shape[1], [32, 16], dropout=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    step = FastStep(
        model,
        optimizer,
        precision=precision,
        refeed_steps=refeed,
        output_strategy="gather" if refeed == 0 else "sparse",
        input_strategy="sparse",
    )
    batch = row_batch(random_matrix(0), np.arange(12))
    torch.manual_seed(11)
    losses = [step(batch).loss for _ in range(2)]
    return losses, model


@pytest.mark.parametrize("refeed", [0, 1])
def test_fp32_step_on_the_fallbacks_matches_the_kernels_and_reference(refeed: int) -> None:
    kernels_losses, with_kernels = _steps("fp32", refeed)
    with disabled():
        plain_losses, plain = _steps("fp32", refeed)
    k = chain_length(plain)
    assert plain_losses == pytest.approx(kernels_losses, rel=(k + 1) * 2.0**-22)
    for (name, a), (_, b) in zip(
        with_kernels.named_parameters(), plain.named_parameters(), strict=True
    ):
        assert_close_normwise(a.detach(), b.detach(), k, name)
    # the fallbacks against the reference (autograd) step, same dropout draws
    torch.manual_seed(3)
    ref = AutoEncoder(random_matrix(0).shape[1], [32, 16], dropout=0.5)
    fast = copy.deepcopy(ref)
    with disabled():
        fast_losses, fast = _steps("fp32", refeed, fast)
    optimizer = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    batch = row_batch(random_matrix(0), np.arange(12))
    torch.manual_seed(11)
    ref_losses = [reference_step(ref, optimizer, batch, refeed_steps=refeed).loss for _ in range(2)]
    assert fast_losses == pytest.approx(ref_losses, rel=(k + 1) * 2.0**-22)
    for (name, a), (_, b) in zip(ref.named_parameters(), fast.named_parameters(), strict=True):
        assert_close_normwise(b.detach(), a.detach(), k, name)


@pytest.mark.parametrize("refeed", [0, 1])
def test_bf16_step_on_the_fallbacks_tracks_the_kernels(refeed: int) -> None:
    """bf16 rounds GEMM outputs to 8 bits: both paths agree to bf16 precision."""
    kernels_losses, with_kernels = _steps("bf16", refeed)
    with disabled():
        plain_losses, plain = _steps("bf16", refeed)
    assert plain_losses == pytest.approx(kernels_losses, rel=1e-2)
    for (name, a), (_, b) in zip(
        with_kernels.named_parameters(), plain.named_parameters(), strict=True
    ):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=2e-2, atol=2e-3, msg=name)
