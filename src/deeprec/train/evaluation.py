"""Batched evaluation: feed each row's training vector, compare outputs at held-out entries.

compute="fast" (default) feeds the sparse rows through `embedding_bag` (no dense
(batch x n) input); compute="reference" builds the dense input as NVIDIA's code does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from deeprec.data.batching import RowBatch, row_batch
from deeprec.data.sparse import CSRMatrix
from deeprec.model.autoencoder import AutoEncoder
from deeprec.step.sparse_ops import row_scaled_values, sparse_rows_matmul


class _Forward:
    """Eval-mode forward over sparse batches; the first weight's (n, h1) layout made once."""

    def __init__(self, model: AutoEncoder, compute: str) -> None:
        self.model = model
        self.fast = compute == "fast"
        if self.fast:
            w = model.encoder_weight(0)  # effective: W * K when kernelised
            self.first_t = w.t() if w.t().is_contiguous() else w.t().contiguous()
            r = model.indicator_weight
            self.indicator_t = None if r is None else r.t().contiguous()

    def __call__(self, batch: RowBatch) -> torch.Tensor:
        model = self.model
        if not self.fast:
            x, _ = batch.dense(dtype=model.encoder_weights[0].dtype)
            return model(x)
        values = None
        if model.input_row_scale > 0:
            values = row_scaled_values(
                batch.local, batch.values.to(self.first_t.dtype), batch.size, model.input_row_scale
            )
        z = sparse_rows_matmul(batch, self.first_t, values)
        if self.indicator_t is not None:  # + W_r 1(x != 0)
            rated = (batch.values != 0).to(self.indicator_t.dtype)
            z = z.add_(sparse_rows_matmul(batch, self.indicator_t, rated))
        h = model.act(z.add_(model.encoder_biases[0]))
        for i in range(1, len(model.hidden)):
            h = model.act(F.linear(h, model.encoder_weight(i), model.encoder_biases[i]))
        return model.decode(h)


@torch.no_grad()
def predict_rows(
    model: AutoEncoder,
    train_rows: CSRMatrix,
    rows: np.ndarray,
    batch_size: int = 1024,
    *,
    compute: str = "fast",
) -> torch.Tensor:
    """Dense outputs (len(rows), n_cols) for the given rows' training vectors, in eval mode
    (computed on the model's device, returned on CPU)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    try:
        forward = _Forward(model, compute)
        for begin in range(0, rows.shape[0], batch_size):
            batch = row_batch(train_rows, rows[begin : begin + batch_size]).to(device)
            outputs.append(forward(batch).cpu())
    finally:
        model.train(was_training)
    if not outputs:
        return torch.zeros(0, train_rows.shape[1])
    return torch.cat(outputs)


@dataclass(frozen=True)
class RatingScale:
    """How a model's outputs map back to ratings: rating = output * scale + baseline, with
    baseline = mean + row_bias[row] + col_bias[col] (oriented rows and columns).

    It lets validation be scored on the rating scale, clipped to the rating range, whatever
    the model sees (raw, centred or standardised values), so every candidate of a model
    selection is judged by the same number."""

    scale: float = 1.0
    mean: float = 0.0
    row_bias: np.ndarray | None = None
    col_bias: np.ndarray | None = None

    def baseline(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        base = np.full(rows.shape[0], self.mean, dtype=np.float64)
        if self.row_bias is not None:
            base += self.row_bias[rows]
        if self.col_bias is not None:
            base += self.col_bias[cols]
        return base


@torch.no_grad()
def evaluate_sse(
    model: AutoEncoder,
    train_rows: CSRMatrix,
    eval_rows: CSRMatrix,
    *,
    batch_size: int = 1024,
    clip: tuple[float, float] | None = None,
    compute: str = "fast",
    ratings: RatingScale | None = None,
) -> tuple[float, float, int]:
    """(sum of squared errors, sum of absolute errors, count) over eval_rows' entries.

    With `ratings`, eval_rows hold raw ratings and outputs are mapped to the rating scale
    (then clipped to `clip`) before they are compared; without it both are compared as
    they are."""
    rows = np.flatnonzero(eval_rows.row_lengths() > 0)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sse = sae = 0.0
    count = 0
    try:
        forward = _Forward(model, compute)
        for begin in range(0, rows.shape[0], batch_size):
            chunk = rows[begin : begin + batch_size]
            out = forward(row_batch(train_rows, chunk).to(device))
            target = row_batch(eval_rows, chunk).to(device)
            pred = out[target.local, target.cols].double()
            if ratings is not None:
                local, cols = target.local.cpu().numpy(), target.cols.cpu().numpy()
                base = ratings.baseline(chunk[local], cols)
                pred = pred * ratings.scale + torch.from_numpy(base).to(pred.device)
            if clip is not None:
                pred = pred.clamp(clip[0], clip[1])
            err = pred - target.values.double()
            sse += float((err * err).sum())
            sae += float(err.abs().sum())
            count += int(err.shape[0])
    finally:
        model.train(was_training)
    return sse, sae, count
