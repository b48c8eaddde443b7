"""GLocal-K's global kernel (Han et al. 2021): a k x k convolution over the whole rating matrix.

The kernel is computed from the data, not stored as free weights: the local autoencoder's
reconstruction of every row is average-pooled to one number per row (a vector p of n_rows
values) and G = identity + reshape(p @ P, (k, k)) / n_rows with P a learned (n_rows, k*k)
matrix (see kernel_from_pooled for how and why this differs from GLocal-K's p @ P). The matrix
(rows x columns, as a 2-D image, zero 'same' padding) is cross-correlated with G and passed
through a ReLU; the autoencoder is then fine-tuned on that input. Why: each entry of the
input then carries its neighbours' ratings (neighbours in the order of the ids), and G
adapts to what the pre-trained model learned about every row.

`global_conv` is the dense operation (training, fold-in); `global_conv_csr` applies it to
a CSR matrix a block of rows at a time (each block with its neighbouring rows) and keeps
the non-zero results, so predicting from it never needs the dense matrix at once.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from deeprec.data.sparse import CSRMatrix


def kernel_from_pooled(pooled: torch.Tensor, pool_weight: torch.Tensor) -> torch.Tensor:
    """G (k, k) = identity + reshape(pooled (n_rows,) @ pool_weight (n_rows, k*k)) / n_rows.

    GLocal-K uses the plain product; here it is a mean (not a sum over the rows: with 1,682
    rows and pooled values near 3.5 one Adam step on P moved G by ~60) added to the
    identity kernel (1 at the centre), so that fine-tuning starts from the pre-trained
    model (ReLU(X) = X for non-negative ratings) instead of from inputs tens of times
    larger (GLocal-K's form lost 0.03 RMSE on ML-100K here; docs/results/single_model.md)."""
    size = math.isqrt(pool_weight.shape[1])
    identity = torch.zeros(size * size, dtype=pool_weight.dtype, device=pool_weight.device)
    identity[size * size // 2] = 1.0
    return (identity + pooled @ pool_weight / pool_weight.shape[0]).view(size, size)


def global_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """ReLU(x cross-correlated with kernel), x (rows, cols) a dense image, zero 'same'
    padding (the output has x's shape)."""
    k = kernel.shape[0]
    out = F.conv2d(x[None, None], kernel[None, None].to(x.dtype), padding=k // 2)
    return torch.relu(out[0, 0])


@torch.no_grad()
def global_conv_csr(matrix: CSRMatrix, kernel: torch.Tensor, block: int = 1024) -> CSRMatrix:
    """global_conv of a CSR matrix (missing entries are 0), as a CSR of its non-zeros;
    `block` rows are densified at a time, plus k // 2 neighbouring rows on each side."""
    from deeprec.data.batching import row_batch

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
        out = _same_columns(x, kernel)  # 'valid' over the padded rows: (stop - begin) rows
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


def _same_columns(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """ReLU of x cross-correlated with kernel: rows 'valid' (x carries the halo rows),
    columns zero-padded 'same'."""
    half = kernel.shape[0] // 2
    out = F.conv2d(x[None, None], kernel[None, None], padding=(0, half))
    return torch.relu(out[0, 0])
