"""The canonical ratings table every reader produces and every split consumes.

A Polars DataFrame with columns `user`, `item` (raw ids: Int64 or String), `rating`
(Float32) and optionally `timestamp` (Int64 seconds since the Unix epoch, UTC).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from deeprec.errors import DataError

USER, ITEM, RATING, TIMESTAMP = "user", "item", "rating", "timestamp"
REQUIRED = (USER, ITEM, RATING)


def to_ratings_table(data: Any, *, columns: dict[str, str] | None = None) -> pl.DataFrame:
    """Coerce a pandas/Polars DataFrame (or dict of arrays) into the canonical table.

    `columns` maps canonical names to the frame's own names, e.g.
    ``{"user": "userId", "item": "movieId", "rating": "rating"}``.
    """
    if isinstance(data, pl.DataFrame):
        frame = data
    elif isinstance(data, dict):
        frame = pl.DataFrame(data)
    else:
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas is a dependency
            pd = None
        if pd is not None and isinstance(data, pd.DataFrame):
            frame = pl.from_pandas(data.reset_index(drop=True))
        else:
            raise DataError(
                f"expected a pandas or Polars DataFrame of ratings, got {type(data).__name__}"
            )
    mapping = dict(columns or {})
    for name in (*REQUIRED, TIMESTAMP):
        mapping.setdefault(name, name)
    missing = [mapping[n] for n in REQUIRED if mapping[n] not in frame.columns]
    if missing:
        raise DataError(
            f"ratings table lacks column(s) {missing}; it has {frame.columns}",
            field=missing[0],
        )
    exprs = [
        _id_expr(frame, mapping[USER]).alias(USER),
        _id_expr(frame, mapping[ITEM]).alias(ITEM),
        pl.col(mapping[RATING]).cast(pl.Float32, strict=False).alias(RATING),
    ]
    if mapping[TIMESTAMP] in frame.columns:
        exprs.append(pl.col(mapping[TIMESTAMP]).cast(pl.Int64, strict=False).alias(TIMESTAMP))
    table = frame.select(exprs)
    bad = table.filter(pl.col(RATING).is_null() | pl.col(RATING).is_nan())
    if bad.height:
        raise DataError(f"{bad.height} rating(s) are missing or not numeric", field=mapping[RATING])
    for name in (USER, ITEM):
        nulls = table.get_column(name).null_count()
        if nulls:
            raise DataError(f"{nulls} {name} id(s) are missing", field=mapping[name])
    return table


def _id_expr(frame: pl.DataFrame, name: str) -> pl.Expr:
    dtype = frame.schema[name]
    if dtype.is_integer():
        return pl.col(name).cast(pl.Int64)
    if dtype.is_float():
        # Float ids that are whole numbers (pandas turns int columns with NaN into floats).
        values = frame.get_column(name).drop_nulls()
        if values.len() == 0 or bool(((values % 1) == 0).all()):
            return pl.col(name).cast(pl.Int64)
    return pl.col(name).cast(pl.String)


def ids_to_numpy(series: pl.Series) -> np.ndarray:
    """Raw ids as a NumPy array that saves without pickle (int64 or fixed-width unicode)."""
    if series.dtype.is_integer():
        return series.cast(pl.Int64).to_numpy()
    return np.asarray(series.cast(pl.String).to_list(), dtype=np.str_)
