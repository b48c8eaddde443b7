"""GLocal-K's fine-tuning phase (Han et al. 2021) for a pre-trained item-based model.

Every epoch is one full-batch step on the dense (rows x columns) training matrix X:
p = mean over columns of model(X) (the local model's reconstruction, one value per row),
G = identity + reshape(p @ P, (k, k)) / n_rows, input = ReLU(X cross-correlated with G),
loss = the masked MSE of model(input) against X on the observed entries (+ the kernel
penalty; L2 through the optimizer as in pre-training). Gradients flow into the autoencoder
through both passes and into P. Why full batch: the convolution mixes neighbouring rows
and G depends on every row's output, so a row batch cannot be stepped alone; the small
sets this is for (ML-100K: 1,682 x 943) fit in memory. Validation after each epoch scores the model on its convolved
training rows, as predictions will; the best epoch's weights and G are kept.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from deeprec.data.batching import row_batch
from deeprec.data.sparse import CSRMatrix
from deeprec.errors import ConfigError, TrainingError
from deeprec.model.autoencoder import AutoEncoder
from deeprec.model.global_kernel import global_conv, kernel_from_pooled, same_columns
from deeprec.step.loss import masked_mse, masked_sse, unobserved_mse
from deeprec.train.config import TrainConfig
from deeprec.train.evaluation import RatingScale, evaluate_sse
from deeprec.train.optim import build_optimizer
from deeprec.train.step import kernel_penalty
from deeprec.train.trainer import EpochCallback, EpochRecord, OrientedData, TrainResult

MAX_DENSE_ENTRIES = 200_000_000  # 800 MB of fp32 per dense copy: refuse beyond this


@torch.no_grad()
def global_conv_csr(matrix: CSRMatrix, kernel: torch.Tensor, block: int = 1024) -> CSRMatrix:
    """model.global_kernel.global_conv of a CSR matrix (missing entries are 0), as a CSR of its non-zeros;
    `block` rows are densified at a time, plus k // 2 neighbouring rows on each side."""
    n_rows, n_cols = matrix.shape
    half = kernel.shape[0] // 2
    kernel = kernel.detach().float().cpu()
    rows_out, cols_out, vals_out = [], [], []
    for begin in range(0, n_rows, block):
        stop = min(begin + block, n_rows)
        lo, hi = max(0, begin - half), min(n_rows, stop + half)
        x, _ = row_batch(matrix, np.arange(lo, hi)).dense()
        # pad to the block's full halo so that the matrix's edges see zero rows
        x = F.pad(x.float(), (0, 0, half - (begin - lo), half - (hi - stop)))
        out = same_columns(x, kernel)  # 'valid' over the padded rows: (stop - begin) rows
        r, c = torch.nonzero(out, as_tuple=True)
        rows_out.append((r + begin).numpy())
        cols_out.append(c.numpy())
        vals_out.append(out[r, c].numpy())
    if not rows_out:
        return CSRMatrix.from_coo(np.zeros(0), np.zeros(0), np.zeros(0), (n_rows, n_cols))
    return CSRMatrix.from_coo(
        np.concatenate(rows_out),
        np.concatenate(cols_out),
        np.concatenate(vals_out),
        (n_rows, n_cols),
    )


def global_kernel_of(model: AutoEncoder, x: torch.Tensor) -> torch.Tensor:
    """G for the dense matrix x, from the model's reconstruction of it (as trained)."""
    assert model.global_pool is not None
    return kernel_from_pooled(model(x).mean(dim=1), model.global_pool)


def convolved_rows(model: AutoEncoder, train: CSRMatrix) -> CSRMatrix:
    """The training rows as a fitted global-kernel model reads them (its saved G)."""
    return global_conv_csr(train, model.global_kernel_matrix)


def finetune(
    model: AutoEncoder,
    config: TrainConfig,
    data: OrientedData,
    *,
    rating_range: tuple[float, float] | None,
    rating_scale: RatingScale | None,
    first_epoch: int,
    on_epoch_end: EpochCallback | None = None,
) -> TrainResult:
    """Fine-tune `model` in place (see the module docstring); epochs are numbered from
    first_epoch. Without validation the last epoch is the model."""
    n_rows, n_cols = data.train.shape
    if n_rows * n_cols > MAX_DENSE_ENTRIES:
        raise ConfigError(
            f"global_kernel fine-tunes on the dense {n_rows} x {n_cols} matrix, more than "
            f"{MAX_DENSE_ENTRIES:,} entries; use global_kernel: 0 for data this large"
        )
    device = next(model.parameters()).device
    x, mask = row_batch(data.train, np.arange(n_rows)).to(device).dense()
    teacher = None if data.teacher is None else data.teacher.to(device)
    lr = config.finetune_lr or config.lr
    optimizer = build_optimizer(model.parameters(), replace(config, lr=lr, lr_schedule="none"))
    generator = torch.Generator(device=device).manual_seed(config.seed + 7919)
    has_valid = data.valid.nnz > 0
    result = TrainResult()
    best_state: dict[str, torch.Tensor] | None = None
    without_gain = 0
    for epoch in range(first_epoch, first_epoch + config.finetune_epochs):
        start = time.perf_counter()
        model.train()
        optimizer.zero_grad(set_to_none=True)
        conv = global_conv(x, global_kernel_of(model, x))
        inputs = conv
        if config.input_dropout > 0:
            keep = torch.rand(conv.shape, generator=generator, device=device)
            inputs = conv * (keep >= config.input_dropout) / (1.0 - config.input_dropout)
        out = model(inputs)
        loss = masked_mse(out, x, mask)
        total = loss + kernel_penalty(model, config.kernel_sparsity)
        if teacher is not None and config.teacher_weight > 0:  # distillation (config teacher)
            total = total + config.teacher_weight * unobserved_mse(out, teacher, mask)
        total.backward()
        optimizer.step()
        if not math.isfinite(float(loss.detach())):
            raise TrainingError(f"loss became {float(loss.detach())} in fine-tuning epoch {epoch}")
        with torch.no_grad():
            sse, count = float(masked_sse(out, x, mask)), int(mask.sum())
            model.eval()
            model.global_kernel_matrix.copy_(global_kernel_of(model, x))
        seconds = time.perf_counter() - start
        eval_start = time.perf_counter()
        valid_rmse = valid_mae = None
        if has_valid:
            rows = convolved_rows(model, data.train)
            v_sse, v_sae, v_n = evaluate_sse(
                model,
                rows,
                data.valid,
                batch_size=config.eval_batch_size,
                clip=rating_range,
                compute="reference",
                ratings=rating_scale,
            )
            valid_rmse, valid_mae = math.sqrt(v_sse / v_n), v_sae / v_n
        record = EpochRecord(
            epoch=epoch,
            train_rmse=math.sqrt(sse / max(count, 1)),
            valid_rmse=valid_rmse,
            valid_mae=valid_mae,
            lr=lr,
            epoch_seconds=seconds,
            eval_seconds=time.perf_counter() - eval_start,
        )
        improved = not has_valid or (
            result.best_valid_rmse is None or valid_rmse < result.best_valid_rmse
        )
        if improved:
            result.best_epoch, result.best_valid_rmse = epoch, valid_rmse
            best_state = copy.deepcopy(model.state_dict())
            without_gain = 0
        else:
            without_gain += 1
        result.history.append(record)
        if on_epoch_end is not None:
            on_epoch_end(record, improved)
        if config.early_stopping and without_gain >= config.early_stopping:
            result.stopped_early = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result


def fold_in_input(model: AutoEncoder, x: torch.Tensor) -> torch.Tensor:
    """A new row's dense input (1, n) as the model reads it: the row alone convolved with
    the saved G (it has no neighbours in the matrix, so they count as zero)."""
    return global_conv(x, model.global_kernel_matrix) if model.global_kernel else x
