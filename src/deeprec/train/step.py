"""The step function the trainer calls per batch, chosen from the config.

The step math itself lives in `deeprec.step` (reference: the paper's procedure; fast: the
same loss and gradients with less work); L-BFGS, which needs the whole objective as a
closure over the config, is here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from deeprec.data.batching import RowBatch
from deeprec.model.autoencoder import AutoEncoder
from deeprec.step.loss import masked_mse, masked_sse
from deeprec.step.reference import StepResult, kernel_penalty, reference_step
from deeprec.train.config import TrainConfig

__all__ = ["StepFunction", "StepResult", "lbfgs_step", "make_step", "reference_step"]


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
    model: AutoEncoder,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    teacher: torch.Tensor | None = None,
) -> StepFunction:
    """The step function for config.compute / config.precision (the trainer's one dispatch).
    `teacher`: a dense (rows x columns) matrix of teacher predictions in the model's target
    space, which distillation pulls the unobserved outputs toward (reference step only).

    compute=reference runs NVIDIA's dense math (bf16 through autocast, as a GPU port would);
    compute=fast runs `deeprec.step.fast.FastStep` (same loss and gradients, less work).
    """
    if config.compute == "fast":
        from deeprec.step.fast import FastStep

        return FastStep(
            model,
            optimizer,
            precision=config.precision,
            refeed_steps=config.refeed_steps,
            input_dropout=config.input_dropout,
            output_strategy=config.output_strategy,
            input_strategy=config.input_strategy,
        )
    if config.optimizer == "lbfgs":
        return lambda batch: lbfgs_step(model, optimizer, batch, config)
    autocast = config.precision == "bf16"
    device_type = next(model.parameters()).device.type  # cpu or cuda: autocast per device

    def step(batch: RowBatch) -> StepResult:
        rows = None
        if teacher is not None:
            rows = teacher[torch.as_tensor(batch.rows, device=teacher.device, dtype=torch.long)]
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            return reference_step(
                model,
                optimizer,
                batch,
                refeed_steps=config.refeed_steps,
                input_dropout=config.input_dropout,
                kernel_sparsity=config.kernel_sparsity,
                teacher=rows,
                teacher_weight=config.teacher_weight,
            )

    return step
