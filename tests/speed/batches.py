"""Small random rating batches for the speed-path tests."""

from __future__ import annotations

import numpy as np

from deeprec.data.batching import RowBatch, row_batch
from deeprec.data.sparse import CSRMatrix


def random_batch(n_rows: int, n_cols: int, seed: int, density: float = 0.3) -> RowBatch:
    """Every row rates column 0 and a random `density` share of the others (ratings 1-5)."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_rows, n_cols)) < density
    mask[:, 0] = True
    rows, cols = np.nonzero(mask)
    values = rng.integers(1, 6, size=rows.shape[0]).astype(np.float32)
    matrix = CSRMatrix.from_coo(rows, cols, values, (n_rows, n_cols))
    return row_batch(matrix, np.arange(n_rows)).prepare()
