"""What a fitted autoencoder reads when it predicts: the rating rows and the centring biases.

An autoencoder predicts a row from the ratings in it. Its weights are chosen on the
validation split (early stopping, the defaults' selection), but once they are chosen the
validation ratings are ratings like any other: fed in as inputs, they tell the network more
about each user (or item) without retraining it. On a time split they are also the newest
ratings. Only the fit's training and validation splits are ever kept, so a test rating can
never become an input.
"""

from __future__ import annotations

import numpy as np

from deeprec.data.sparse import CSRMatrix
from deeprec.errors import ConfigError

# predict_inputs / predict_center: which ratings the fitted model reads at prediction time.
PREDICT_SOURCES = ("train", "train+valid")


def check_source(name: str, value: object) -> str:
    """`value` if it is one of PREDICT_SOURCES, else a clear ConfigError."""
    if value not in PREDICT_SOURCES:
        raise ConfigError(
            f"{name} must be one of {', '.join(map(repr, PREDICT_SOURCES))}, got {value!r}"
        )
    return str(value)


def merge_ratings(first: CSRMatrix, second: CSRMatrix | None) -> CSRMatrix:
    """Every entry of both matrices; a (row, column) pair held by both keeps `first`'s value
    (a validation rating never overrides a training one)."""
    if second is None or second.nnz == 0:
        return first
    if first.shape != second.shape:
        raise ValueError(f"cannot merge rating matrices of shapes {first.shape} and {second.shape}")
    rows = np.concatenate(
        [np.repeat(np.arange(m.shape[0], dtype=np.int64), m.row_lengths()) for m in (first, second)]
    )
    cols = np.concatenate([first.indices, second.indices]).astype(np.int64)
    values = np.concatenate([first.values, second.values])
    keys = rows * first.shape[1] + cols
    _, keep = np.unique(keys, return_index=True)  # the first occurrence: first's entry
    return CSRMatrix.from_coo(rows[keep], cols[keep], values[keep], first.shape)


def coo(matrix: CSRMatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, values) of a CSR matrix."""
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), matrix.row_lengths())
    return rows, matrix.indices.astype(np.int64), matrix.values
