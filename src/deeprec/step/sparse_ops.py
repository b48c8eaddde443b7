"""Sparse products of a rating batch with dense matrices, as `embedding_bag` sums.

With S the batch's (rows x n) sparse rating matrix and W an (n, d) row-major table:
- S @ W   = one bag per batch row over the rows of W it rated, weighted by the ratings;
- S^T @ G = one bag per column over the batch rows of G that rated it (G is tiny: batch x d).
Both read each needed row once, contiguously, and never build the dense (rows x n) matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deeprec.data.batching import RowBatch


def bag_sum(
    table: torch.Tensor, index: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """out[j] = sum_{t in bag j} weights[t] * table[index[t]]; offsets has n_bags + 1 entries."""
    return F.embedding_bag(
        index,
        table,
        offsets,
        mode="sum",
        per_sample_weights=weights.to(table.dtype),
        include_last_offset=True,
    )


def sparse_rows_matmul(
    batch: RowBatch, table: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """S @ table for S = the batch's ratings (or `weights` at the same positions): (rows, d)."""
    values = batch.values if weights is None else weights
    return bag_sum(table, batch.cols, batch.row_offsets(), values)


def sparse_cols_matmul(
    batch: RowBatch, dense: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """S^T @ dense for S = the batch's ratings (or `weights`, in row order): (n_cols, d)."""
    by_col = batch.by_column()
    values = by_col.values if weights is None else weights[by_col.perm]
    return bag_sum(dense, by_col.local, by_col.offsets, values)


def sparse_cols_matmul_touched(
    batch: RowBatch, dense: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, rows U of S^T @ dense) for U = the columns the batch rated (the other rows are 0)."""
    by_col = batch.by_column()
    union, _ = batch.column_union()
    offsets = torch.cat([by_col.offsets[union], by_col.offsets[-1:]])
    values = by_col.values if weights is None else weights[by_col.perm]
    return union, bag_sum(dense, by_col.local, offsets, values)


def column_sums(batch: RowBatch, weights: torch.Tensor) -> torch.Tensor:
    """sum over rows of S where S holds `weights` at the batch's positions: (n_cols,)."""
    out = torch.zeros(batch.n_cols, dtype=weights.dtype, device=weights.device)
    return out.index_add_(0, batch.cols, weights)


def row_scaled_values(
    local: torch.Tensor, values: torch.Tensor, n_rows: int, scale: float
) -> torch.Tensor:
    """Sparse form of AutoEncoder.scale_inputs: each value times scale / sqrt(the number of
    non-zero values in its row); `local` gives each value's row (0..n_rows-1)."""
    counts = torch.bincount(local[values != 0], minlength=n_rows).clamp_min(1)
    factor = scale / counts.to(values.dtype).sqrt()  # the same float ops as the dense form
    return values * factor[local]
