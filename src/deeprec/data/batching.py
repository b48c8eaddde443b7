"""Mini-batches of rating rows from a CSR matrix, built with vectorised NumPy/PyTorch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, is_dataclass, replace

import numpy as np
import torch

from deeprec.data.sparse import CSRMatrix


@dataclass
class RowBatch:
    """Rows of the rating matrix: sparse triplets plus, on demand, dense input and mask."""

    rows: np.ndarray  # row indices (users for user-based, items for item-based)
    local: torch.Tensor  # int64 (nnz,) position of each rating's row within the batch
    cols: torch.Tensor  # int64 (nnz,) column of each rating
    values: torch.Tensor  # float32 (nnz,)
    n_cols: int

    @property
    def size(self) -> int:
        return int(self.rows.shape[0])

    def to(self, device: torch.device | str) -> RowBatch:
        """The batch with every tensor field (also cached index structures) on `device`;
        itself when already there."""
        device = torch.device(device)
        if self.values.device == device:
            return self
        moved = {f.name: _to_device(getattr(self, f.name), device) for f in fields(self) if f.init}
        return replace(self, **moved)

    def dense(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense (batch, n_cols) ratings and 0/1 mask (a 0 rating keeps mask 1), built on the
        device the batch's tensors live on."""
        device = self.values.device
        x = torch.zeros(self.size, self.n_cols, dtype=dtype, device=device)
        mask = torch.zeros(self.size, self.n_cols, dtype=dtype, device=device)
        x[self.local, self.cols] = self.values.to(dtype)
        mask[self.local, self.cols] = 1.0
        return x, mask


def _to_device(value, device: torch.device):
    """Tensors (also inside tuples and dataclasses) moved to `device`; anything else as is."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, tuple):
        return tuple(_to_device(v, device) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return replace(
            value,
            **{f.name: _to_device(getattr(value, f.name), device) for f in fields(value) if f.init},
        )
    return value


def row_batch(matrix: CSRMatrix, rows: np.ndarray) -> RowBatch:
    local, cols, values = matrix.select_rows(rows)
    return RowBatch(
        rows=np.asarray(rows),
        local=torch.from_numpy(local),
        cols=torch.from_numpy(cols),
        values=torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)),
        n_cols=matrix.shape[1],
    )


def epoch_order(rows: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The shuffled row order of one epoch: a function of (seed, epoch) only, so a resumed
    run replays exactly the same order."""
    rng = np.random.default_rng([seed, epoch])
    return rows[rng.permutation(rows.shape[0])]


def iter_row_batches(
    matrix: CSRMatrix, order: np.ndarray, batch_size: int, start: int = 0
) -> Iterator[RowBatch]:
    """Every row in `order`, the last partial batch included (the reference code drops it)."""
    for begin in range(start * batch_size, order.shape[0], batch_size):
        yield row_batch(matrix, order[begin : begin + batch_size])
