"""Raw rating files -> a split, indexed, prepared dataset directory (the `prepare` command).

Pipeline: resolve files -> read (vectorised) -> NumPy code space -> drop duplicate (user, item)
pairs (keep the latest) -> label rows by the split -> the common rules (validation carve-out,
unseen drop, 50/50 holdout) -> Table-1 statistics and meta.json -> atomic save.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from deeprec.data.dataset import FORMAT_VERSION, PreparedDataset, Split, split_arrays
from deeprec.data.indexing import Columns, distinct
from deeprec.data.items import align, find_item_file, read_items
from deeprec.data.readers import FORMATS, guess_format, read_ratings, resolve_files
from deeprec.data.readers._io import sha256_file
from deeprec.data.readers.convert import SPLIT
from deeprec.data.splits import COLUMN_VALUES, SplitSpec, finalize, parse_split
from deeprec.errors import DataError, DataWarning

MAX_LISTED_FILES = 64


def prepare_dataset(
    inputs: Sequence[str | Path],
    fmt: str | None = None,
    split: str | SplitSpec = "random:0.9,0.05,0.05",
    out: str | Path | None = None,
    *,
    seed: int = 0,
    columns: str | dict[str, str] | None = None,
    valid_fraction: float = 0.05,
    keep_unseen: bool = False,
    rating_scale: tuple[float, float] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    items: str | Path | bool | None = None,
    item_columns: str | dict[str, str] | None = None,
) -> PreparedDataset:
    """Read, split, index and (when `out` is given) atomically save a dataset.

    `fmt` is netflix, movielens, csv or parquet (None: guessed from the names). For the
    ``given`` split, `inputs` is a train file then a test file (or train, valid, test).
    Duplicate (user, item) pairs keep the latest rating (by timestamp, else the last in file
    order); their count is warned about and stored in meta.json.

    Item metadata (titles, genres; deeprec.data.items): `items` is a file (read with
    `item_columns` where it is not a known format), None to use a known file found next to
    the inputs (u.item, movies.dat, movies.csv, movie_titles.txt), or False for none.
    """
    spec = split if isinstance(split, SplitSpec) else parse_split(split)
    if not 0.0 <= valid_fraction < 1.0:
        raise DataError("valid fraction must be in [0, 1)", field="valid_fraction")
    if out is not None and Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass --overwrite to replace it)")
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise DataError("no input files given")
    fmt = fmt or guess_format(inputs)
    if fmt not in FORMATS:
        raise DataError(
            f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}", field="format"
        )
    if spec.kind == "given":
        if len(inputs) not in (2, 3):
            raise DataError(
                "the 'given' split takes a train file then a test file (or train, valid, test); "
                f"got {len(inputs)} inputs",
                field="split",
            )
        groups = [resolve_files([p], fmt) for p in inputs]
    else:
        groups = [resolve_files(inputs, fmt)]
    files = [p for group in groups for p in group]
    item_raw, item_source = _read_item_metadata(inputs, items, item_columns)
    with ThreadPoolExecutor(max_workers=1) as pool:  # checksums overlap with parsing
        digests = pool.map(sha256_file, files)
        tables = [
            read_ratings(
                group,
                fmt,
                columns=columns,
                rating_scale=rating_scale,
                split_column=spec.column if spec.kind == "column" else None,
                progress=progress,
            )
            for group in groups
        ]
        sources = _sources(fmt, inputs, files, list(digests))
    given_labels = _given_labels(tables, spec, files)
    table = (
        pl.concat(tables, how="vertical_relaxed", rechunk=False) if len(tables) > 1 else tables[0]
    )
    del tables
    n_read = table.height
    if SPLIT in table.columns:
        table = table.drop(SPLIT)
    holder = [table]
    del table
    cols = Columns.consume(holder)
    group = given_labels if spec.kind == "given" else None
    cols, duplicates, example = _deduplicate(cols, group)
    if given_labels is not None and duplicates:
        given_labels = cols.labels.copy()
    if duplicates:
        where = files[0] if len(files) == 1 else f"{len(files)} files"
        warnings.warn(
            f"{where}: {duplicates:,} duplicate (user, item) rating(s), e.g. {example}; "
            "kept the latest of each (by timestamp, else the last in the file)",
            DataWarning,
            stacklevel=2,
        )
    from deeprec.data.splits import assign_labels

    cols.labels = assign_labels(
        spec, len(cols), timestamps=cols.timestamps, seed=seed, given_labels=given_labels
    )
    user_ids, item_ids, users, items, report = finalize(
        cols, spec, seed=seed, keep_unseen=keep_unseen, valid_fraction=valid_fraction
    )
    parts, _ = split_arrays(cols, users, items)
    del cols, users, items
    meta = _meta(
        parts,
        n_users=user_ids.shape[0],
        n_items=item_ids.shape[0],
        spec=spec,
        seed=seed,
        valid_fraction=valid_fraction,
        keep_unseen=keep_unseen,
        report=report,
        duplicates=duplicates,
        n_read=n_read,
        sources=sources,
        rating_scale=rating_scale,
        fmt=fmt,
    )
    item_table = align(item_raw, item_ids)
    if item_source is not None:
        meta["item_metadata"] = {
            "path": str(item_source),
            "rows": 0 if item_raw is None else item_raw.height,
            "items_with_title": 0 if item_table is None else item_table.height,
        }
    dataset = PreparedDataset(
        user_ids=user_ids, item_ids=item_ids, meta=meta, items=item_table, **parts
    )
    if out is not None:
        dataset.save(out, overwrite=overwrite)
    return dataset


def _read_item_metadata(
    inputs: list[Path], items: str | Path | bool | None, item_columns: Any
) -> tuple[pl.DataFrame | None, Path | None]:
    """Read the item metadata file first, so that a bad one fails before the long part."""
    if items is False:
        return None, None
    if items is None or items is True:
        if item_columns is not None:
            raise DataError("item columns given without an items file", field="item_columns")
        source = find_item_file(inputs)
        if source is None:
            return None, None
    else:
        source = Path(items)
    return read_items(source, item_columns), source


def _given_labels(
    tables: list[pl.DataFrame], spec: SplitSpec, files: list[Path]
) -> np.ndarray | None:
    if spec.kind == "given":
        roles = [0, 2] if len(tables) == 2 else [0, 1, 2]
        return np.concatenate(
            [np.full(t.height, role, dtype=np.int8) for t, role in zip(tables, roles, strict=True)]
        )
    if spec.kind == "column":
        values = tables[0].get_column(SPLIT)
        mapped = values.replace_strict(COLUMN_VALUES, default=None, return_dtype=pl.Int8)
        bad = mapped.is_null().arg_true()
        if bad.len():
            row = int(bad[0])
            raise DataError(
                f"row {row + 1}: split value {values[row]!r} is not one of train, valid, test",
                path=files[0] if len(files) == 1 else None,
                field=spec.column,
            )
        return mapped.to_numpy().astype(np.int8)
    return None


def _deduplicate(cols: Columns, group: np.ndarray | None) -> tuple[Columns, int, str]:
    """Keep the latest rating of each (user, item) pair (within each given file).

    The check hashes the pairs in slices of the item range, so its memory stays small
    even for 100M ratings; only when duplicates exist is anything sorted.
    """
    n = len(cols)
    n_items = max(cols.item_ids.shape[0], 1)
    slices = max(1, n // 16_000_000)
    edges = np.linspace(0, n_items, slices + 1).astype(np.int64)
    distinct_pairs = 0
    for lo, hi in itertools.pairwise(edges):
        rows = (cols.items >= lo) & (cols.items < hi) if slices > 1 else slice(None)
        key = cols.users[rows].astype(np.int64) * n_items + cols.items[rows]
        if group is not None:
            key = key * 4 + group[rows]
        distinct_pairs += pl.Series(key).n_unique()
        del key
    if distinct_pairs == n:
        return cols, 0, ""
    key = cols.users.astype(np.int64) * n_items + cols.items
    if group is not None:
        key = key * 4 + group
    rows = np.arange(n, dtype=np.int64)
    order = np.lexsort((rows, cols.timestamps if cols.timestamps is not None else rows, key))
    ordered = key[order]
    last = np.ones(n, dtype=bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    keep = np.zeros(n, dtype=bool)
    keep[order[last]] = True
    first_dup = int(order[np.flatnonzero(~last)[0]])
    example = (
        f"user {cols.user_ids[cols.users[first_dup]]!s}, "
        f"item {cols.item_ids[cols.items[first_dup]]!s}"
    )
    if group is not None:
        cols.labels = group
    return cols.take(keep), int(n - keep.sum()), example


def _sources(fmt: str, inputs: list[Path], files: list[Path], digests: list[str]) -> dict[str, Any]:
    listed = [
        {"path": str(p), "bytes": p.stat().st_size, "sha256": d}
        for p, d in zip(files, digests, strict=True)
    ]
    combined = hashlib.sha256(
        "".join(f"{p.name}\t{d}\n" for p, d in zip(files, digests, strict=True)).encode()
    ).hexdigest()
    out: dict[str, Any] = {
        "format": fmt,
        "inputs": [str(p) for p in inputs],
        "n_files": len(files),
        "bytes": sum(item["bytes"] for item in listed),
        "sha256_of_file_checksums": combined,
    }
    if len(files) <= MAX_LISTED_FILES:
        out["files"] = listed
    else:
        out["files_note"] = (
            f"{len(files)} files: sha256_of_file_checksums is the sha256 of the lines "
            "'NAME<TAB>SHA256' of every file in reading order"
        )
    return out


def _day(seconds: int) -> str:
    return dt.datetime.fromtimestamp(int(seconds), tz=dt.UTC).date().isoformat()


def split_stats(part: Split, n_users: int, n_items: int) -> dict[str, Any]:
    """users, items, ratings and the first/last day of one split."""
    stats: dict[str, Any] = {
        "users": distinct(part.users, n_users),
        "items": distinct(part.items, n_items),
        "ratings": len(part),
    }
    if part.timestamps is not None and len(part):
        stats["first"] = _day(part.timestamps.min())
        stats["last"] = _day(part.timestamps.max())
    return stats


def _interval(spec: SplitSpec, name: str, stats: dict[str, Any]) -> str | None:
    """Table 1's interval: the defined window where there is one, else the data's range."""
    if spec.dates:
        train_start, train_end, test_start, test_end = spec.dates
        if name == "train":
            return f"{train_start or stats.get('first', '?')}..{train_end}"
        return f"{test_start}..{test_end}"
    if "first" in stats:
        return f"{stats['first']}..{stats['last']}"
    return None


def _meta(
    parts: dict[str, Split],
    *,
    n_users: int,
    n_items: int,
    spec: SplitSpec,
    seed: int,
    valid_fraction: float,
    keep_unseen: bool,
    report: Any,
    duplicates: int,
    n_read: int,
    sources: dict[str, Any],
    rating_scale: tuple[float, float] | None,
    fmt: str,
) -> dict[str, Any]:
    splits = {name: split_stats(part, n_users, n_items) for name, part in parts.items()}
    for name, stats in splits.items():
        stats["interval"] = _interval(spec, name, stats)
    holdout = Split(
        users=np.concatenate([parts["valid"].users, parts["test"].users]),
        items=np.concatenate([parts["valid"].items, parts["test"].items]),
        ratings=np.concatenate([parts["valid"].ratings, parts["test"].ratings]),
        timestamps=None
        if parts["test"].timestamps is None
        else np.concatenate([parts["valid"].timestamps, parts["test"].timestamps]),
    )
    both = split_stats(holdout, n_users, n_items)
    both["interval"] = _interval(spec, "test", both)
    table1 = {
        "train": {k: splits["train"].get(k) for k in ("interval", "users", "items", "ratings")},
        "test": {k: both.get(k) for k in ("interval", "users", "items", "ratings")},
        "note": "test = validation + test (the paper's test window before its 50/50 cut)",
    }
    all_ratings = np.concatenate([p.ratings for p in parts.values()])
    definition = spec.describe()
    definition.update(
        {
            "seed": seed,
            "valid_fraction": valid_fraction,
            "valid_from_train": report.valid_from_train,
            "keep_unseen": keep_unseen,
        }
    )
    if report.threshold is not None:
        definition["train_last_day"] = report.threshold
    return {
        "format_version": FORMAT_VERSION,
        "source": sources,
        "split": definition,
        "splits": splits,
        "table1": table1,
        "rows_read": n_read,
        "duplicates": duplicates,
        "duplicate_policy": "keep the latest rating of each (user, item) pair "
        "(by timestamp, else the last in file order)",
        "dropped_unseen": report.dropped_unseen,
        "excluded_outside_windows": report.excluded_outside_windows,
        "rating_range": [float(all_ratings.min()), float(all_ratings.max())]
        if all_ratings.size
        else [0.0, 0.0],
        "rating_scale": list(rating_scale) if rating_scale is not None else None,
        "n_users": n_users,
        "n_items": n_items,
        "has_timestamps": parts["train"].timestamps is not None,
    }


def format_table1(meta: dict[str, Any]) -> str:
    """The statistics as text in the form of the paper's Table 1."""
    rows = [("split", "interval", "users", "items", "ratings")]
    for name in ("train", "valid", "test"):
        s = meta["splits"][name]
        rows.append(
            (
                name,
                s.get("interval") or "-",
                f"{s['users']:,}",
                f"{s['items']:,}",
                f"{s['ratings']:,}",
            )
        )
    t = meta["table1"]["test"]
    rows.append(
        (
            "valid+test",
            t.get("interval") or "-",
            f"{t['users']:,}",
            f"{t['items']:,}",
            f"{t['ratings']:,}",
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    dropped = ", ".join(f"{k} {v:,}" for k, v in meta["dropped_unseen"].items()) or "none"
    lines.append(
        f"dropped (user or item unseen in train): {dropped}; outside the split's windows: "
        f"{meta['excluded_outside_windows']:,}; duplicates: {meta['duplicates']:,}"
    )
    lines.append(f"users {meta['n_users']:,}, items {meta['n_items']:,}")
    return "\n".join(lines)


def heldout_loss_warning(meta: dict[str, Any], threshold: float = 0.5) -> str | None:
    """A warning when the split dropped more than `threshold` of its held-out (valid +
    test) ratings because their user or item has no training rating; None otherwise."""
    dropped = sum(int(v) for k, v in meta.get("dropped_unseen", {}).items() if k != "train")
    kept = sum(int(meta["splits"][name]["ratings"]) for name in ("valid", "test"))
    total = dropped + kept
    if total == 0 or dropped <= threshold * total:
        return None
    return (
        f"the split dropped {dropped:,} of {total:,} held-out ratings ({dropped / total:.0%}): "
        "their user or item has no rating in the training part. --keep-unseen keeps them "
        "(scored with the model's fallback); a split that leaves more history in training "
        "(e.g. --split random:0.8,0.1,0.1, or a later time cut) loses fewer"
    )


__all__ = ["format_table1", "heldout_loss_warning", "prepare_dataset", "split_stats"]
