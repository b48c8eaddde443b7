"""Raw ids -> contiguous indices in O(n) NumPy, for tables of 100M+ ratings.

Integer ids in a compact range use a presence table (no sort, no hash); anything else falls
back to a sorted unique + join. Everything else (train maps, the unseen rule, splits) works on
the int32 codes, so the big Polars table can be freed early.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from deeprec.data.table import ITEM, RATING, TIMESTAMP, USER, ids_to_numpy

TRAIN, VALID, TEST, HOLDOUT, EXCLUDED, UNSEEN = 0, 1, 2, 3, -1, -2
LABELS = {"train": TRAIN, "valid": VALID, "test": TEST}


def factorize(series: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique raw ids, int32 code of every row) for an id column."""
    n = series.len()
    if series.dtype.is_integer():
        values = series.cast(pl.Int64).to_numpy()
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int32)
        lo, hi = int(values.min()), int(values.max())
        base = min(lo, 0)  # non-negative ids index the table directly (no shifted copy)
        if hi - base + 1 <= max(4 * n, 1 << 22):
            present = np.zeros(hi - base + 1, dtype=bool)
            shifted = values if base == 0 else values - base
            present[shifted] = True
            ids = np.flatnonzero(present).astype(np.int64) + base
            remap = (np.cumsum(present, dtype=np.int64) - 1).astype(np.int32)
            return ids, remap[shifted]
        ids = np.unique(values)
        return ids, np.searchsorted(ids, values).astype(np.int32)
    text = series.cast(pl.String)
    uniq = text.unique().sort()
    codes = (
        pl.DataFrame({"k": text})
        .join(
            pl.DataFrame({"k": uniq, "i": pl.int_range(uniq.len(), dtype=pl.Int32, eager=True)}),
            on="k",
            how="left",
            maintain_order="left",
        )
        .get_column("i")
        .to_numpy()
    )
    return ids_to_numpy(uniq), codes.astype(np.int32)


@dataclass
class Columns:
    """A ratings table as NumPy columns in code space, plus a split label per row."""

    user_ids: np.ndarray  # every raw user id in the table, sorted
    item_ids: np.ndarray
    users: np.ndarray  # int32 codes into user_ids
    items: np.ndarray
    ratings: np.ndarray  # float32
    timestamps: np.ndarray | None  # int64 seconds
    labels: np.ndarray  # int8: TRAIN, VALID, TEST, HOLDOUT (valid or test, drawn later), ...

    @classmethod
    def from_table(cls, table: pl.DataFrame, labels: np.ndarray | None = None) -> Columns:
        return cls.consume([table], labels)

    @classmethod
    def consume(cls, holder: list[pl.DataFrame], labels: np.ndarray | None = None) -> Columns:
        """Convert the table in `holder` (which is emptied) column by column, freeing each
        Polars column once converted: peak memory stays near one copy of the data."""
        table = holder.pop()
        n = table.height
        user_ids, users = factorize(table.get_column(USER))
        table = table.drop(USER)
        item_ids, items = factorize(table.get_column(ITEM))
        table = table.drop(ITEM)
        ratings = table.get_column(RATING).cast(pl.Float32).to_numpy()
        table = table.drop(RATING)
        ts = (
            table.get_column(TIMESTAMP).cast(pl.Int64).to_numpy()
            if TIMESTAMP in table.columns
            else None
        )
        del table
        if labels is None:
            labels = np.zeros(n, dtype=np.int8)
        return cls(
            user_ids=user_ids,
            item_ids=item_ids,
            users=users,
            items=items,
            ratings=ratings,
            timestamps=ts,
            labels=np.asarray(labels, dtype=np.int8),
        )

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def take(self, keep: np.ndarray) -> Columns:
        """Only the rows where `keep` is true (maps unchanged)."""
        return Columns(
            self.user_ids,
            self.item_ids,
            self.users[keep],
            self.items[keep],
            self.ratings[keep],
            None if self.timestamps is None else self.timestamps[keep],
            self.labels[keep],
        )


def restrict(codes: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maps covering only the ids used by `rows`: (sub ids, new index per row or -1)."""
    present = np.zeros(ids.shape[0], dtype=bool)
    present[codes[rows]] = True
    remap = np.full(ids.shape[0], -1, dtype=np.int32)
    remap[present] = np.arange(int(present.sum()), dtype=np.int32)
    return ids[present], remap[codes]


def distinct(codes: np.ndarray, size: int) -> int:
    """Number of distinct codes (O(n), no sort)."""
    if codes.shape[0] == 0:
        return 0
    return int(np.count_nonzero(np.bincount(codes, minlength=size)))
