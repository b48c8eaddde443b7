"""MovieLens ratings: 100K `u.data` (tabs), 1M/10M `ratings.dat` (`::`), 20M+ `ratings.csv`.

The layout is recognised from the first line, so renamed or compressed copies work too
(`u1.base`, `ratings.dat.gz`, ...). Columns are user, item, rating[, timestamp] in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from deeprec.data.readers._io import read_bytes
from deeprec.data.readers.delimited import read_delimited, sniff
from deeprec.data.table import ITEM, RATING, TIMESTAMP, USER
from deeprec.errors import DataError

SCALE = (0.0, 5.0)
_RATING_FILES = ("ratings.dat", "ratings.csv", "u.data")


def find_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Folders resolve to their ratings file (u.data, ratings.dat or ratings.csv, maybe compressed)."""
    files: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = [
                p
                for name in _RATING_FILES
                for p in sorted(path.glob(f"{name}*"))
                if p.is_file() and p.name.split(name, 1)[1] in ("", ".gz", ".xz", ".bz2")
            ]
            if not found:
                raise DataError(
                    "no MovieLens ratings file (u.data, ratings.dat, ratings.csv)", path=path
                )
            files.append(found[0])
        elif path.is_file():
            files.append(path)
        else:
            raise DataError("input not found", path=path)
    return files


def read_movielens_file(path: Path, *, scale: tuple[float, float] | None = SCALE) -> pl.DataFrame:
    data = read_bytes(path)
    if not data.strip():
        raise DataError("the file is empty", path=path)
    separator, has_header, fields, data = sniff(data, path)
    if len(fields) not in (3, 4):
        raise DataError(
            f"expected user, item, rating[, timestamp]; the first line has {len(fields)} fields",
            path=path,
            line=1,
        )
    mapping: dict[str, str | int] = {USER: 0, ITEM: 1, RATING: 2}
    if len(fields) == 4:
        mapping[TIMESTAMP] = 3
    return read_delimited(
        data,
        path,
        separator=separator,
        has_header=has_header,
        mapping=mapping,
        scale=scale,
        typed=True,
    )
