"""Readers: raw rating files of any supported format -> the canonical Polars table.

``read_ratings(inputs, fmt)`` is the one entry point; each format lives in its own module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from deeprec.data.readers import generic, movielens, netflix
from deeprec.data.readers._io import strip_compression
from deeprec.data.table import ITEM, USER
from deeprec.errors import DataError

FORMATS = ("netflix", "movielens", "csv", "parquet")


def default_scale(fmt: str) -> tuple[float, float] | None:
    """Rating scale a format implies (ratings outside it are errors); None = any finite value."""
    return {"netflix": netflix.SCALE, "movielens": movielens.SCALE}.get(fmt)


def guess_format(inputs: Sequence[str | Path]) -> str:
    """A format from names: mv_*/combined_data_*/training_set -> netflix, .parquet, u.data, ..."""
    path = Path(inputs[0])
    if path.is_dir():
        if (
            (path / "training_set").is_dir()
            or any(path.glob("mv_*.txt*"))
            or any(path.glob("combined_data_*"))
        ):
            return "netflix"
        return "movielens"
    name = strip_compression(path)
    if netflix.is_netflix_name(path):
        return "netflix"
    if name.endswith(".parquet"):
        return "parquet"
    if name in ("u.data", "ratings.dat") or name.endswith((".base", ".test", ".dat")):
        return "movielens"
    return "csv"


def resolve_files(inputs: Sequence[str | Path], fmt: str) -> list[Path]:
    """The concrete files a list of inputs (files or folders) stands for, in reading order."""
    if not inputs:
        raise DataError("no input files given")
    if fmt == "netflix":
        return netflix.find_files(inputs)
    if fmt == "movielens":
        return movielens.find_files(inputs)
    files = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            pattern = "*.parquet" if fmt == "parquet" else "*.[ct]sv*"
            found = sorted(p for p in path.glob(pattern) if p.is_file())
            if not found:
                raise DataError(f"no {fmt} files in folder", path=path)
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError("input not found", path=path)
    return files


def read_ratings(
    files: Sequence[Path],
    fmt: str,
    *,
    columns: str | dict[str, str] | None = None,
    rating_scale: tuple[float, float] | None = None,
    split_column: str | None = None,
    progress: bool = False,
) -> pl.DataFrame:
    """Read resolved `files` (see resolve_files) into one canonical table, in file order.

    `rating_scale` (low, high) overrides the format's scale; ratings outside it are errors.
    `split_column` keeps that column (as lower-case text named "split"; csv/parquet only).
    """
    if fmt not in FORMATS:
        raise DataError(
            f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}", field="format"
        )
    mapping = generic.parse_columns(columns)
    if mapping and fmt in ("netflix", "movielens"):
        raise DataError(f"--columns applies to csv and parquet, not {fmt}", field="columns")
    if split_column and fmt in ("netflix", "movielens"):
        raise DataError(f"a split column needs csv or parquet input, not {fmt}", field="split")
    scale = rating_scale if rating_scale is not None else default_scale(fmt)
    if fmt == "netflix":
        return netflix.read_netflix(files, progress=progress, scale=scale or netflix.SCALE)
    from tqdm import tqdm

    frames = []
    for path in tqdm(
        files, desc=f"read {fmt}", unit="file", disable=not progress or len(files) < 2
    ):
        if fmt == "movielens":
            frames.append(movielens.read_movielens_file(path, scale=scale))
        elif fmt == "csv":
            frames.append(
                generic.read_csv_file(path, columns=mapping, scale=scale, split_column=split_column)
            )
        else:
            frames.append(
                generic.read_parquet_file(
                    path, columns=mapping, scale=scale, split_column=split_column
                )
            )
    return concat_tables(frames)


def concat_tables(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Concatenate canonical tables; ids become text where files disagree on their type."""
    if len(frames) == 1:
        return frames[0]
    for column in (USER, ITEM):
        if len({f.schema[column] for f in frames}) > 1:
            frames = [f.with_columns(pl.col(column).cast(pl.String)) for f in frames]
    has_ts = all("timestamp" in f.columns for f in frames)
    if not has_ts:
        frames = [f.drop("timestamp", strict=False) for f in frames]
    return pl.concat(frames, rechunk=False)
