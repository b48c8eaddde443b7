"""GLocal-K's global kernel (Han et al. 2021): a k x k convolution over the whole rating matrix.

The kernel is computed from the data, not stored as free weights: the local autoencoder's
reconstruction of every row is average-pooled to one number per row (a vector p of n_rows
values) and G = identity + reshape(p @ P, (k, k)) / n_rows with P a learned (n_rows, k*k)
matrix (see kernel_from_pooled for how and why this differs from GLocal-K's p @ P). The matrix
(rows x columns, as a 2-D image, zero 'same' padding) is cross-correlated with G and passed
through a ReLU; the autoencoder is then fine-tuned on that input. Why: each entry of the
input then carries its neighbours' ratings (neighbours in the order of the ids), and G
adapts to what the pre-trained model learned about every row.

`global_conv` is the dense operation (training, fold-in); `train.global_finetune.
global_conv_csr` applies it to a CSR matrix a block of rows at a time (the model knows no
data formats).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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


def same_columns(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """ReLU of x cross-correlated with kernel: rows 'valid' (x carries the halo rows),
    columns zero-padded 'same'."""
    half = kernel.shape[0] // 2
    out = F.conv2d(x[None, None], kernel[None, None], padding=(0, half))
    return torch.relu(out[0, 0])
