"""The paper's training step (Kuchaiev & Ginsburg 2017, section 2.2), as NVIDIA's code runs
it: dense products, autograd, masked MSE on the observed entries, then optional dense
re-feeding. Every other step (`deeprec.step.fast`, `deeprec.step.graph`) must give the same
loss and gradients as `reference_step`; tests/speed compares them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deeprec.data.batching import RowBatch
from deeprec.model.autoencoder import AutoEncoder
from deeprec.step.loss import masked_mse, masked_sse, unobserved_mse


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
    kernel_sparsity: float = 0.0,
    teacher: torch.Tensor | None = None,
    teacher_weight: float = 0.0,
) -> StepResult:
    """NVIDIA's procedure: update on (x, f(x)) with the observed mask, then `refeed_steps`
    updates on (y, f(y)) with a full mask, where y = f(x) detached (section 2.2).
    With kernelised weights, kernel_sparsity/2 * sum K^2 is added to each loss. With
    `teacher` (the batch rows' dense teacher predictions, in the model's target space),
    teacher_weight * the mean squared distance to it over the unobserved entries is added
    to the first loss (distillation; deeprec.teacher)."""
    # parameters(), not model.encoder_weights: under torchrun `model` is the DDP wrapper
    x, mask = batch.dense(dtype=next(model.parameters()).dtype)
    inputs = F.dropout(x, p=input_dropout, training=True) if input_dropout > 0 else x
    optimizer.zero_grad(set_to_none=True)
    out = model(inputs)
    loss = masked_mse(out, x, mask)
    total = loss + kernel_penalty(model, kernel_sparsity)
    if teacher is not None and teacher_weight > 0:
        total = total + teacher_weight * unobserved_mse(out, teacher.to(out.dtype), mask)
    total.backward()
    optimizer.step()
    with torch.no_grad():
        sse = float(masked_sse(out, x, mask))
    y = out.detach()
    for _ in range(refeed_steps):
        optimizer.zero_grad(set_to_none=True)
        out_y = model(y)
        refeed_loss = F.mse_loss(out_y, y)
        (refeed_loss + kernel_penalty(model, kernel_sparsity)).backward()
        optimizer.step()
        y = out_y.detach()
    count = int(batch.values.shape[0])
    return StepResult(sse=sse, count=count, loss=float(loss.detach()))


def kernel_penalty(model: torch.nn.Module, kernel_sparsity: float) -> torch.Tensor | float:
    """kernel_sparsity/2 * sum over layers of ||K||^2 (0 without kernels)."""
    if kernel_sparsity == 0.0:
        return 0.0
    kernels = getattr(model, "module", model).kernels()  # the DDP wrapper's module
    return 0.5 * kernel_sparsity * sum((k * k).sum() for k in kernels)
