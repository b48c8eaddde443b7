"""Vectorised conversion of raw columns to the canonical types, naming the first bad row.

Rows map to file lines as ``line = row + line_offset`` (Polars keeps one row per line, blank
lines included, when quoting is off), so every error can name its file and line.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from deeprec.data.readers._io import first_true
from deeprec.data.table import ITEM, RATING, TIMESTAMP, USER
from deeprec.errors import DataError

_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d", "%d/%m/%Y")
_INT_RE = r"^[+-]?\d+$"
SPLIT = "split"  # extra column kept for `--split column:NAME`


class Where:
    """How to name a row in errors: a file line, or a row number (Parquet)."""

    def __init__(self, path: Path, line_offset: int | None, *, row_offset: int = 1) -> None:
        self.path = path
        self.line_offset = line_offset
        self.row_offset = row_offset

    def fail(self, row: int, message: str, field: str | None) -> DataError:
        if self.line_offset is None:
            return DataError(f"row {row + self.row_offset}: {message}", path=self.path, field=field)
        return DataError(message, path=self.path, line=row + self.line_offset, field=field)


def ids(series: pl.Series, where: Where, field: str) -> pl.Series:
    """Integer ids as Int64, anything else as String; missing ids are an error."""
    if series.dtype.is_integer():
        out = series.cast(pl.Int64)
    elif series.dtype.is_float():
        bad = series.is_null() | series.is_nan() | (series.round(0) != series)
        row = first_true(bad)
        if row is not None:
            raise where.fail(row, f"id {series[row]!r} is not a whole number", field)
        return series.cast(pl.Int64)
    else:
        text = series.cast(pl.String).str.strip_chars()
        row = first_true(text.is_null() | (text == ""))
        if row is not None:
            raise where.fail(row, "id is missing", field)
        # Leading zeros (IMDb ids such as 0000008) would be lost as integers: keep text then.
        padded = (text.str.starts_with("0") & (text.str.len_chars() > 1)).any()
        integral = bool(text.str.contains(_INT_RE).all())
        out = text.cast(pl.Int64, strict=False) if integral and not padded else text
    row = first_true(out.is_null())
    if row is not None:
        raise where.fail(row, "id is missing", field)
    return out


def ratings(
    series: pl.Series, where: Where, field: str, scale: tuple[float, float] | None
) -> pl.Series:
    """Float32 ratings; non-numeric, missing, infinite or out-of-scale values are errors."""
    raw = series
    if series.dtype == pl.String:
        series = series.str.strip_chars().cast(pl.Float32, strict=False)
    else:
        series = series.cast(pl.Float32, strict=False)
    row = first_true(series.is_null() | ~series.is_finite())
    if row is not None:
        if raw[row] is None:
            raise where.fail(row, "rating is missing", field)
        raise where.fail(row, f"rating {raw[row]!r} is not a number", field)
    if scale is not None:
        row = first_true((series < scale[0]) | (series > scale[1]))
        if row is not None:
            raise where.fail(
                row,
                f"rating {series[row]:g} is outside the scale {scale[0]:g}..{scale[1]:g}",
                field,
            )
    return series.alias(RATING)


def timestamps(series: pl.Series, where: Where, field: str) -> pl.Series:
    """Epoch seconds (UTC) from integers, floats, dates, datetimes or date/time text."""
    dtype = series.dtype
    if dtype == pl.Date:
        out = series.cast(pl.Int64) * 86_400
    elif isinstance(dtype, pl.Datetime):
        out = series.dt.epoch("s")
    elif dtype.is_integer():
        out = series.cast(pl.Int64)
    elif dtype.is_numeric():
        out = series.cast(pl.Float64).floor().cast(pl.Int64, strict=False)
    else:
        text = series.cast(pl.String).str.strip_chars()
        if text.str.contains(r"^[+-]?\d+(\.\d*)?$").all():
            out = text.cast(pl.Float64, strict=False).floor().cast(pl.Int64, strict=False)
        else:
            out = _parse_dates(text)
    row = first_true(out.is_null())
    if row is not None:
        if series[row] is None:
            raise where.fail(row, "timestamp is missing", field)
        raise where.fail(row, f"timestamp {series[row]!r} is not a date or a number", field)
    return out.alias(TIMESTAMP)


def _parse_dates(text: pl.Series) -> pl.Series:
    """Try the common formats on the first value; use the one that fits, strictly off."""
    sample = text.drop_nulls()
    sample = sample.filter(sample != "").head(1)
    for fmt in _DATE_FORMATS:
        if sample.len() and sample.str.to_datetime(fmt, strict=False).null_count() == 0:
            parsed = text.str.to_datetime(fmt, strict=False, time_unit="us")
            return parsed.dt.epoch("s")
    try:
        parsed = text.str.to_datetime(strict=False, time_unit="us", time_zone="UTC")
        return parsed.dt.epoch("s")
    except pl.exceptions.PolarsError:
        return pl.Series(TIMESTAMP, [None] * text.len(), dtype=pl.Int64)


def canonical(
    frame: pl.DataFrame,
    mapping: dict[str, str],
    where: Where,
    scale: tuple[float, float] | None,
) -> pl.DataFrame:
    """Canonical table from `frame` whose columns are named by `mapping` (canonical -> own)."""
    jobs = [
        (USER, lambda: ids(frame.get_column(mapping[USER]), where, mapping[USER]).alias(USER)),
        (ITEM, lambda: ids(frame.get_column(mapping[ITEM]), where, mapping[ITEM]).alias(ITEM)),
        (RATING, lambda: ratings(frame.get_column(mapping[RATING]), where, mapping[RATING], scale)),
    ]
    if mapping.get(TIMESTAMP):
        jobs.append(
            (
                TIMESTAMP,
                lambda: timestamps(frame.get_column(mapping[TIMESTAMP]), where, mapping[TIMESTAMP]),
            )
        )
    columns, errors = [], []
    for _, job in jobs:
        try:
            columns.append(job())
        except DataError as exc:
            errors.append(exc)
    if errors:  # report the earliest bad line, whichever column it is in
        raise min(errors, key=lambda e: (e.line if e.line is not None else 0, e.reason))
    if mapping.get(SPLIT):
        column = (
            frame.get_column(mapping[SPLIT]).cast(pl.String).str.strip_chars().str.to_lowercase()
        )
        columns.append(column.alias(SPLIT))
    return pl.DataFrame(columns)
