"""One optimisation step on a batch: the sparse pass and optional dense re-feeding.

This is the seam where compute strategies (reference dense math, fast sparse paths, bf16)
plug in; all of them must give the same loss and gradients as `reference_step`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deeprec.data.batching import RowBatch
from deeprec.model.autoencoder import AutoEncoder
from deeprec.train.config import TrainConfig
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
    kernel_sparsity: float = 0.0,
) -> StepResult:
    """NVIDIA's procedure: update on (x, f(x)) with the observed mask, then `refeed_steps`
    updates on (y, f(y)) with a full mask, where y = f(x) detached (section 2.2).
    With kernelised weights, kernel_sparsity/2 * sum K^2 is added to each loss."""
    # parameters(), not model.encoder_weights: under torchrun `model` is the DDP wrapper
    x, mask = batch.dense(dtype=next(model.parameters()).dtype)
    inputs = F.dropout(x, p=input_dropout, training=True) if input_dropout > 0 else x
    optimizer.zero_grad(set_to_none=True)
    out = model(inputs)
    loss = masked_mse(out, x, mask)
    (loss + kernel_penalty(model, kernel_sparsity)).backward()
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


def lbfgs_step(
    model: AutoEncoder,
    optimizer: torch.optim.Optimizer,
    batch: RowBatch,
    config: TrainConfig,
) -> StepResult:
    """`config.lbfgs_iterations` L-BFGS iterations on one (full) batch. The objective is the
    masked MSE + weight_decay/2 * ||W||^2 over the decayed matrices + the kernel penalty,
    the same objective coupled weight decay gives the first-order optimizers."""
    from deeprec.train.optim import decayed_parameters

    x, mask = batch.dense(dtype=next(model.parameters()).dtype)
    decayed = decayed_parameters(model.parameters(), config) if config.weight_decay else []

    def objective() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = masked_mse(model(x), x, mask) + kernel_penalty(model, config.kernel_sparsity)
        if decayed:
            loss = loss + 0.5 * config.weight_decay * sum((p * p).sum() for p in decayed)
        loss.backward()
        return loss

    optimizer.step(objective)
    with torch.no_grad():  # the step's training error at the weights it ends with
        out = model(x)
        sse = float(masked_sse(out, x, mask))
    count = int(batch.values.shape[0])
    return StepResult(sse=sse, count=count, loss=sse / max(count, 1))


StepFunction = Callable[[RowBatch], StepResult]


def make_step(
    model: AutoEncoder, optimizer: torch.optim.Optimizer, config: TrainConfig
) -> StepFunction:
    """The step function for config.compute / config.precision (the trainer's one dispatch).

    compute=reference runs NVIDIA's dense math (bf16 through autocast, as a GPU port would);
    compute=fast runs `deeprec.train.fast_step.FastStep` (same loss and gradients, less work).
    """
    if config.compute == "fast":
        from deeprec.train.fast_step import FastStep

        return FastStep(
            model,
            optimizer,
            precision=config.precision,
            refeed_steps=config.refeed_steps,
            input_dropout=config.input_dropout,
            lazy_updates=config.lazy_updates,
        )
    if config.optimizer == "lbfgs":
        return lambda batch: lbfgs_step(model, optimizer, batch, config)
    autocast = config.precision == "bf16"
    device_type = next(model.parameters()).device.type  # cpu or cuda: autocast per device

    def step(batch: RowBatch) -> StepResult:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            return reference_step(
                model,
                optimizer,
                batch,
                refeed_steps=config.refeed_steps,
                input_dropout=config.input_dropout,
                kernel_sparsity=config.kernel_sparsity,
            )

    return step
