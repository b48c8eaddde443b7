"""Any CSV/TSV/Parquet table of ratings, with the user naming the columns.

`--columns user=COL,item=COL,rating=COL[,timestamp=COL]` names them (or gives 0-based positions
for files without a header). Without it, common names are recognised (userId, movie_id, Date...).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from deeprec.data.readers._io import read_bytes, strip_compression
from deeprec.data.readers.convert import SPLIT, Where, canonical
from deeprec.data.readers.delimited import read_delimited, sniff
from deeprec.data.table import ITEM, RATING, TIMESTAMP, USER
from deeprec.errors import DataError

ALIASES = {
    USER: ("user", "userid", "user_id", "customerid", "customer_id", "uid", "reviewerid"),
    ITEM: ("item", "itemid", "item_id", "movieid", "movie_id", "mid", "iid", "asin", "product_id"),
    RATING: ("rating", "ratings", "score", "stars", "value"),
    TIMESTAMP: ("timestamp", "time", "date", "datetime", "unix_ts", "unixreviewtime", "ts"),
}


def parse_columns(spec: str | dict[str, str] | None) -> dict[str, str]:
    """`user=A,item=B,rating=C[,timestamp=D]` -> {"user": "A", ...} (validated keys)."""
    if spec is None or isinstance(spec, dict):
        mapping = dict(spec or {})
    else:
        mapping = {}
        for part in spec.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not value.strip():
                raise DataError(f"--columns entry {part!r} is not KEY=COLUMN", field="columns")
            mapping[key.strip().lower()] = value.strip()
    unknown = set(mapping) - {USER, ITEM, RATING, TIMESTAMP}
    if unknown:
        raise DataError(
            f"unknown --columns key(s) {sorted(unknown)}; use user, item, rating, timestamp",
            field="columns",
        )
    return mapping


def _auto_mapping(
    names: list[str], given: dict[str, str], path: Path, *, positional: bool
) -> dict[str, str | int]:
    mapping: dict[str, str | int] = dict(given)
    if positional:
        defaults = {USER: 0, ITEM: 1, RATING: 2, TIMESTAMP: 3}
        for key, pos in defaults.items():
            if key not in mapping and pos < len(names) and (key != TIMESTAMP or len(names) > 3):
                mapping[key] = pos
        return mapping
    lowered = {n.lower(): n for n in names}
    for key, aliases in ALIASES.items():
        if key in mapping:
            continue
        for alias in aliases:
            if alias in lowered:
                mapping[key] = lowered[alias]
                break
    missing = [k for k in (USER, ITEM, RATING) if k not in mapping]
    if missing:
        raise DataError(
            f"cannot tell which column is {', '.join(missing)}; pass --columns "
            f"user=COL,item=COL,rating=COL[,timestamp=COL] (columns: {names})",
            path=path,
            field=missing[0],
        )
    return mapping


def read_csv_file(
    path: Path,
    *,
    columns: dict[str, str] | None = None,
    scale: tuple[float, float] | None = None,
    split_column: str | None = None,
) -> pl.DataFrame:
    data = read_bytes(path)
    if not data.strip():
        raise DataError("the file is empty", path=path)
    separator, has_header, fields, data = sniff(data, path)
    if strip_compression(path).endswith(".tsv"):
        separator = "\t"
    mapping = _auto_mapping(fields, columns or {}, path, positional=not has_header)
    if split_column:
        mapping[SPLIT] = split_column
    return read_delimited(
        data,
        path,
        separator=separator,
        has_header=has_header,
        mapping=mapping,
        scale=scale,
        typed=False,
        quote_char='"',
    )


def read_parquet_file(
    path: Path,
    *,
    columns: dict[str, str] | None = None,
    scale: tuple[float, float] | None = None,
    split_column: str | None = None,
) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path)
    except FileNotFoundError as exc:
        raise DataError("input file not found", path=path) from exc
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read Parquet ({exc})", path=path) from exc
    except pl.exceptions.PanicException as exc:  # reliability (issue 8): a damaged file can
        # make Polars panic (found by Hypothesis); the panic is a BaseException
        reason = str(exc).splitlines()[0][:200]
        raise DataError(f"cannot read Parquet, the file is damaged ({reason})", path=path) from None
    mapping = _auto_mapping(frame.columns, columns or {}, path, positional=False)
    if split_column:
        mapping[SPLIT] = split_column
    for key, col in mapping.items():
        if col not in frame.columns:
            raise DataError(
                f"no column {col!r}; the file has {frame.columns}", path=path, field=key
            )
    if frame.height == 0:
        raise DataError("no ratings found", path=path)
    where = Where(path, None)
    return canonical(frame, {k: str(v) for k, v in mapping.items()}, where, scale)
