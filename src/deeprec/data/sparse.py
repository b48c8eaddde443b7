"""A minimal CSR rating matrix built with vectorised NumPy (no SciPy dependency).

Explicit ratings include 0 on some scales, so "stored entry" is the mask, never "value != 0".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CSRMatrix:
    """Rows are users (or items when transposed); `indices` are sorted within each row."""

    indptr: np.ndarray  # int64, shape (n_rows + 1,)
    indices: np.ndarray  # int32, shape (nnz,)
    values: np.ndarray  # float32, shape (nnz,)
    shape: tuple[int, int]

    @classmethod
    def from_coo(
        cls, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]
    ) -> CSRMatrix:
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        order = np.lexsort((cols, rows))
        counts = np.bincount(rows, minlength=shape[0])
        indptr = np.zeros(shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(
            indptr=indptr,
            indices=cols[order].astype(np.int32),
            values=np.asarray(values, dtype=np.float32)[order],
            shape=(int(shape[0]), int(shape[1])),
        )

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])

    def row_lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def transpose(self) -> CSRMatrix:
        rows = np.repeat(np.arange(self.shape[0], dtype=np.int64), self.row_lengths())
        return CSRMatrix.from_coo(self.indices, rows, self.values, (self.shape[1], self.shape[0]))

    def select_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """COO triplets (local row position, column, value) of the given rows, vectorised."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        total = int(lengths.sum())
        local = np.repeat(np.arange(rows.shape[0], dtype=np.int64), lengths)
        offsets = np.arange(total, dtype=np.int64) - np.repeat(
            np.cumsum(lengths) - lengths, lengths
        )
        flat = np.repeat(starts, lengths) + offsets
        return local, self.indices[flat].astype(np.int64), self.values[flat]
