"""Mini-batches with static shapes for a GPU step: padded to a few size buckets.

A CUDA graph (or a torch.compile(mode="reduce-overhead") region) replays fixed shapes, but a
batch's number of ratings (nnz) varies. Batches are therefore padded:

- every batch has exactly `batch_size` rows; a short last batch is filled with the *pad row*,
  an extra empty row appended to the CSR matrix (index n_rows);
- its ratings are padded to the next size of a geometric ladder (`bucket_sizes`, 1.25x steps
  rounded to a multiple of 128), so an epoch uses a handful of shapes, one graph each;
- padding entries are marked invalid (`valid` False) with value 0 in column 0 and row
  `batch_size`, a spare row of the dense batch that the step drops: they contribute exactly
  nothing to the loss or to any gradient.

Which bucket each batch needs is known on the host before the epoch starts (`EpochPlan`, from
the row lengths and the epoch order), so nothing is read back from the GPU to choose it.

`gather_padded` builds a batch's padded (local row, column, value) triplets with tensor ops
only (no host synchronisation, no data-dependent shapes): with the CSR matrix resident on the
GPU (`DeviceCSR`; Netflix scale is ~0.8 GB) it runs inside the captured graph. Where the matrix
does not fit, the triplets are built on the host (`host_padded`) into pinned buffers and
copied asynchronously (`step/graph.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from deeprec.data.sparse import CSRMatrix

BUCKET_GROWTH = 1.25
BUCKET_QUANTUM = 128
MIN_BUCKET = 1024


def bucket_sizes(
    max_nnz: int,
    *,
    smallest: int = MIN_BUCKET,
    growth: float = BUCKET_GROWTH,
    quantum: int = BUCKET_QUANTUM,
) -> np.ndarray:
    """Ascending padded sizes: `smallest`, then x`growth` each (multiples of `quantum`), the
    last >= max_nnz. Padding is under 1 - 1/growth = 20% of a padded batch (plus the
    quantum)."""
    sizes = [max(quantum, _round_up(smallest, quantum))]
    while sizes[-1] < max_nnz:
        grown = _round_up(math.ceil(sizes[-1] * growth), quantum)
        sizes.append(max(sizes[-1] + quantum, grown))
    return np.asarray(sizes, dtype=np.int64)


def _round_up(n: int, quantum: int) -> int:
    return int(-(-int(n) // quantum) * quantum)


def max_batch_nnz(row_lengths: np.ndarray, batch_size: int) -> int:
    """The most ratings any batch of `batch_size` rows can hold: its largest rows' sum."""
    if row_lengths.shape[0] <= batch_size:
        return int(row_lengths.sum())
    return int(np.partition(row_lengths, -batch_size)[-batch_size:].sum())


@dataclass
class EpochPlan:
    """An epoch's batches, padded: rows (n_batches, batch_size) with the pad row, each batch's
    real nnz and its padded size (a bucket)."""

    rows: np.ndarray  # int64 (n_batches, batch_size)
    nnz: np.ndarray  # int64 (n_batches,)
    padded: np.ndarray  # int64 (n_batches,)
    real_rows: np.ndarray  # int64 (n_batches,) rows that are not the pad row

    @property
    def n_batches(self) -> int:
        return int(self.rows.shape[0])


def plan_epoch(
    row_lengths: np.ndarray, order: np.ndarray, batch_size: int, sizes: np.ndarray
) -> EpochPlan:
    """The batches `iter_row_batches(matrix, order, batch_size)` yields, as padded rows."""
    pad_row = row_lengths.shape[0]
    n_batches = math.ceil(order.shape[0] / batch_size)
    rows = np.full(n_batches * batch_size, pad_row, dtype=np.int64)
    rows[: order.shape[0]] = order
    lengths = np.zeros(rows.shape[0], dtype=np.int64)
    lengths[: order.shape[0]] = row_lengths[order]
    nnz = lengths.reshape(n_batches, batch_size).sum(axis=1)
    index = np.searchsorted(sizes, nnz, side="left")
    if n_batches and index.max() >= sizes.shape[0]:
        raise ValueError(f"a batch has {nnz.max()} ratings, more than the largest bucket")
    real = np.full(n_batches, batch_size, dtype=np.int64)
    if n_batches:
        real[-1] = order.shape[0] - (n_batches - 1) * batch_size
    return EpochPlan(
        rows=rows.reshape(n_batches, batch_size), nnz=nnz, padded=sizes[index], real_rows=real
    )


@dataclass
class DeviceCSR:
    """A CSR matrix on a device, with one empty pad row appended (index n_rows) and one
    dummy entry after the last (column 0, value 0), so that every gather index is valid."""

    indptr: torch.Tensor  # int64 (n_rows + 2,)
    indices: torch.Tensor  # int32 (nnz + 1,)
    values: torch.Tensor  # float32 (nnz + 1,)
    n_rows: int
    n_cols: int

    @property
    def pad_row(self) -> int:
        return self.n_rows

    @staticmethod
    def nbytes(matrix: CSRMatrix) -> int:
        return (matrix.shape[0] + 2) * 8 + (matrix.nnz + 1) * 8

    @classmethod
    def from_csr(cls, matrix: CSRMatrix, device: torch.device | str = "cpu") -> DeviceCSR:
        indptr = np.append(matrix.indptr.astype(np.int64), matrix.indptr[-1])
        indices = np.append(matrix.indices.astype(np.int32), np.int32(0))
        values = np.append(matrix.values.astype(np.float32), np.float32(0))
        return cls(
            indptr=torch.from_numpy(indptr).to(device),
            indices=torch.from_numpy(indices).to(device),
            values=torch.from_numpy(values).to(device),
            n_rows=int(matrix.shape[0]),
            n_cols=int(matrix.shape[1]),
        )


def gather_padded(
    indptr: torch.Tensor,
    indices: torch.Tensor,
    values: torch.Tensor,
    rows: torch.Tensor,
    size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch `rows` as `size` padded triplets, with tensor ops only (capture-safe).

    Returns (local, cols, values, valid): local is each entry's row in the batch
    (`rows.shape[0]`, the spare row, for padding), cols in `indices`' dtype, values in
    `values`' dtype, valid a bool mask. Real entries come first, in the order
    `deeprec.data.batching.row_batch` gives them; padding reads the matrix's dummy last entry
    (column 0, value 0). Needs size >= the batch's nnz (the plan guarantees it). About 16
    small kernels: each one is a node of the step's CUDA graph.
    """
    batch = rows.shape[0]
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    ends = torch.cumsum(lengths, 0)
    position = torch.arange(size, device=rows.device, dtype=ends.dtype)
    local = torch.searchsorted(ends, position, right=True)  # == batch past the last rating
    valid = local < batch
    shift = starts - (ends - lengths)  # per row: source index minus position in the batch
    source = torch.where(valid, position + shift[local.clamp(max=batch - 1)], indices.shape[0] - 1)
    return local, indices[source], values[source], valid


def host_padded(
    matrix: CSRMatrix, rows: np.ndarray, size: int, pad_row: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """gather_padded on the host with NumPy (for data that does not fit on the GPU):
    (local, cols, values) of length `size`; padding has local = len(rows), col 0, value 0."""
    batch = rows.shape[0]
    real = rows[rows != pad_row]
    starts = matrix.indptr[real]
    lengths = matrix.indptr[real + 1] - starts
    total = int(lengths.sum())
    local = np.full(size, batch, dtype=np.int64)
    cols = np.zeros(size, dtype=np.int64)
    vals = np.zeros(size, dtype=np.float32)
    offsets = np.zeros(real.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.arange(total, dtype=np.int64) + np.repeat(starts - offsets[:-1], lengths)
    local[:total] = np.repeat(np.flatnonzero(rows != pad_row), lengths)
    cols[:total] = matrix.indices[flat]
    vals[:total] = matrix.values[flat]
    return local, cols, vals
