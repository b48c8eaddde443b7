"""Batched evaluation: feed each row's training vector, compare outputs at held-out entries."""

from __future__ import annotations

import numpy as np
import torch

from deeprec.data.batching import row_batch
from deeprec.data.sparse import CSRMatrix
from deeprec.model.autoencoder import AutoEncoder


@torch.no_grad()
def predict_rows(
    model: AutoEncoder, train_rows: CSRMatrix, rows: np.ndarray, batch_size: int = 1024
) -> torch.Tensor:
    """Dense outputs (len(rows), n_cols) for the given rows' training vectors, in eval mode
    (computed on the model's device, returned on CPU)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    try:
        for begin in range(0, rows.shape[0], batch_size):
            x, _ = row_batch(train_rows, rows[begin : begin + batch_size]).to(device).dense()
            outputs.append(model(x).cpu())
    finally:
        model.train(was_training)
    if not outputs:
        return torch.zeros(0, train_rows.shape[1])
    return torch.cat(outputs)


@torch.no_grad()
def evaluate_sse(
    model: AutoEncoder,
    train_rows: CSRMatrix,
    eval_rows: CSRMatrix,
    *,
    batch_size: int = 1024,
    clip: tuple[float, float] | None = None,
) -> tuple[float, float, int]:
    """(sum of squared errors, sum of absolute errors, count) over eval_rows' entries."""
    rows = np.flatnonzero(eval_rows.row_lengths() > 0)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sse = sae = 0.0
    count = 0
    try:
        for begin in range(0, rows.shape[0], batch_size):
            chunk = rows[begin : begin + batch_size]
            x, _ = row_batch(train_rows, chunk).to(device).dense()
            out = model(x)
            target = row_batch(eval_rows, chunk).to(device)
            pred = out[target.local, target.cols].double()
            if clip is not None:
                pred = pred.clamp(clip[0], clip[1])
            err = pred - target.values.double()
            sse += float((err * err).sum())
            sae += float(err.abs().sum())
            count += int(err.shape[0])
    finally:
        model.train(was_training)
    return sse, sae, count
