"""One optimisation step on a batch: the sparse pass and optional dense re-feeding.

This is the seam where compute strategies (reference dense math, fast sparse paths, bf16)
plug in; all of them must give the same loss and gradients as `reference_step`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deeprec.data.batching import RowBatch
from deeprec.model.autoencoder import AutoEncoder
from deeprec.train.loss import masked_mse, masked_sse


@dataclass
class StepResult:
    sse: float  # sum of squared errors of the sparse pass, over observed ratings
    count: int  # observed ratings in the batch
    loss: float  # the sparse pass's MMSE


def reference_step(
    model: AutoEncoder,
    optimizer: torch.optim.Optimizer,
    batch: RowBatch,
    *,
    refeed_steps: int = 0,
    input_dropout: float = 0.0,
) -> StepResult:
    """NVIDIA's procedure: update on (x, f(x)) with the observed mask, then `refeed_steps`
    updates on (y, f(y)) with a full mask, where y = f(x) detached (section 2.2)."""
    x, mask = batch.dense()
    inputs = F.dropout(x, p=input_dropout, training=True) if input_dropout > 0 else x
    optimizer.zero_grad(set_to_none=True)
    out = model(inputs)
    loss = masked_mse(out, x, mask)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        sse = float(masked_sse(out, x, mask))
    y = out.detach()
    for _ in range(refeed_steps):
        optimizer.zero_grad(set_to_none=True)
        out_y = model(y)
        refeed_loss = F.mse_loss(out_y, y)
        refeed_loss.backward()
        optimizer.step()
        y = out_y.detach()
    count = int(batch.values.shape[0])
    return StepResult(sse=sse, count=count, loss=float(loss.detach()))
