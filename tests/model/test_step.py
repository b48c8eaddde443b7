"""The training step: the sparse update, then re-feeding on f(x) with a full mask."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from deeprec.data.batching import row_batch
from deeprec.data.sparse import CSRMatrix
from deeprec.model.autoencoder import AutoEncoder
from deeprec.step.loss import masked_mse
from deeprec.step.reference import reference_step


def _batch():
    rows = np.array([0, 0, 1, 2, 2, 2])
    cols = np.array([1, 4, 0, 0, 2, 3])
    vals = np.array([4.0, 0.0, 3.0, 5.0, 1.0, 2.0], dtype=np.float32)  # includes a 0 rating
    matrix = CSRMatrix.from_coo(rows, cols, vals, (3, 5))
    return row_batch(matrix, np.array([0, 1, 2]))


def _model(seed: int = 0) -> AutoEncoder:
    torch.manual_seed(seed)
    return AutoEncoder(5, [3, 2], activation="sigmoid", dropout=0.0)


def _sgd_update(model: AutoEncoder, loss: torch.Tensor, lr: float) -> None:
    grads = torch.autograd.grad(loss, list(model.parameters()))
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads, strict=True):
            p -= lr * g


@pytest.mark.parametrize("refeed_steps", [0, 1, 2])
def test_refeeding_updates_on_detached_f_x_with_a_full_mask(refeed_steps: int) -> None:
    lr = 0.5
    batch = _batch()
    model = _model()
    manual = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    result = reference_step(model, optimizer, batch, refeed_steps=refeed_steps)

    x, mask = batch.dense()
    assert mask.sum().item() == 6  # the 0 rating is observed
    out = manual(x)
    sparse_loss = masked_mse(out, x, mask)
    y = out.detach().clone()  # f(x) before the update, as a constant target
    _sgd_update(manual, sparse_loss, lr)
    for _ in range(refeed_steps):
        out_y = manual(y)
        full = ((out_y - y) ** 2).mean()  # full mask: every one of the batch x n entries
        _sgd_update(manual, full, lr)
        y = out_y.detach().clone()

    assert result.count == 6
    assert result.loss == pytest.approx(sparse_loss.item(), rel=1e-6)
    assert result.sse == pytest.approx(sparse_loss.item() * 6, rel=1e-6)
    for (name, got), want in zip(model.named_parameters(), manual.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7, msg=name)


def test_refeeding_changes_the_update() -> None:
    """Re-feeding really runs: one re-feed step gives different weights than none."""
    batch = _batch()
    a, b = _model(), _model()
    reference_step(a, torch.optim.SGD(a.parameters(), lr=0.5), batch, refeed_steps=0)
    reference_step(b, torch.optim.SGD(b.parameters(), lr=0.5), batch, refeed_steps=1)
    assert not torch.equal(a.encoder_weights[0], b.encoder_weights[0])


def test_refeed_target_is_detached() -> None:
    """The re-feed loss's gradient equals the one with y as a constant (no path through y)."""
    batch = _batch()
    model = _model()
    x, _ = batch.dense()
    y = model(x).detach()
    out_y = model(y)
    loss = ((out_y - y) ** 2).mean()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    # The same loss with y still attached would also differentiate through the target.
    y_attached = model(x)
    loss_attached = ((model(y_attached) - y_attached) ** 2).mean()
    grads_attached = torch.autograd.grad(loss_attached, list(model.parameters()))
    assert any(not torch.allclose(g, h) for g, h in zip(grads, grads_attached, strict=True))

    # lr 0 for the sparse pass isolates the re-feed update: w -= 1.0 * grad(loss with y const)
    stepped = copy.deepcopy(model)

    class _Switch(torch.optim.SGD):
        calls = 0

        def step(self, closure=None):  # type: ignore[override]
            for group in self.param_groups:
                group["lr"] = 0.0 if _Switch.calls == 0 else 1.0
            _Switch.calls += 1
            return super().step(closure)

    switch = _Switch(stepped.parameters(), lr=1.0)
    reference_step(stepped, switch, batch, refeed_steps=1)
    for p0, p1, g in zip(model.parameters(), stepped.parameters(), grads, strict=True):
        torch.testing.assert_close(p1, p0 - g, rtol=1e-5, atol=1e-6)
