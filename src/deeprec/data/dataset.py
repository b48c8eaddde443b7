"""The prepared dataset: train/valid/test with contiguous indices and raw-id maps.

On disk (written atomically, byte-identical for identical inputs and seed)::

    DIR/meta.json                   counts, rating range, split definition, checksums, Table-1 stats
    DIR/user_ids.npy, item_ids.npy  index -> raw id (sorted; int64 or unicode, never pickled)
    DIR/<split>/{users,items,ratings[,timestamps]}.npy   for split in train, valid, test
    DIR/items.parquet               optional item metadata: item, title, genres (deeprec.data.items)

Index maps are sorted arrays, so raw -> index is a vectorised `searchsorted`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deeprec.atomic import atomic_directory
from deeprec.data.sparse import CSRMatrix
from deeprec.errors import DataError

SPLITS = ("train", "valid", "test")
ITEMS_FILE = "items.parquet"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Split:
    """One split's ratings as parallel arrays of indices into the dataset's id maps."""

    users: np.ndarray  # int32
    items: np.ndarray  # int32
    ratings: np.ndarray  # float32
    timestamps: np.ndarray | None = None  # int64 seconds, UTC

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @classmethod
    def empty(cls) -> Split:
        return cls(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32), None)


def lookup(sorted_ids: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Map raw ids to indices in `sorted_ids`; -1 where the id is unknown."""
    raw = np.asarray(raw)
    if sorted_ids.dtype.kind in "iu":
        if raw.dtype.kind not in "iu":
            try:
                raw = raw.astype(np.int64)
            except OverflowError:  # reliability (issue 8): ids beyond int64 are unknown,
                return _lookup_big(sorted_ids, raw)  # the others still resolve
            except (TypeError, ValueError):
                return np.full(raw.shape, -1, dtype=np.int64)
    else:
        raw = raw.astype(np.str_)
    if sorted_ids.shape[0] == 0:
        return np.full(raw.shape, -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, raw)
    pos_clipped = np.minimum(pos, sorted_ids.shape[0] - 1)
    found = sorted_ids[pos_clipped] == raw
    return np.where(found, pos_clipped, -1).astype(np.int64)


def _lookup_big(sorted_ids: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """`lookup` for an object array holding integers too large for int64 (never known)."""
    out = np.full(raw.shape, -1, dtype=np.int64)
    flat = raw.ravel()
    fits = np.array(
        [isinstance(v, (int, np.integer)) and -(2**63) <= int(v) < 2**63 for v in flat], bool
    ).reshape(raw.shape)
    if fits.any():
        out[fits] = lookup(sorted_ids, np.array([int(v) for v in raw[fits]], dtype=np.int64))
    return out


@dataclass
class PreparedDataset:
    """A split ratings dataset in index space plus everything needed to speak raw ids."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    train: Split
    valid: Split
    test: Split
    meta: dict[str, Any] = field(default_factory=dict)
    items: Any = None  # polars DataFrame (item, title, genres) aligned with item_ids, or None

    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def rating_range(self) -> tuple[float, float]:
        low, high = self.meta.get("rating_range") or _range(self.train.ratings)
        return float(low), float(high)

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def user_index(self, raw: np.ndarray) -> np.ndarray:
        return lookup(self.user_ids, raw)

    def item_index(self, raw: np.ndarray) -> np.ndarray:
        return lookup(self.item_ids, raw)

    def csr(self, name: str = "train") -> CSRMatrix:
        """The split as a users x items CSR matrix."""
        part = self.split(name)
        return CSRMatrix.from_coo(
            part.users, part.items, part.ratings, (self.n_users, self.n_items)
        )

    def to_pandas(self, name: str = "train"):  # -> pandas.DataFrame
        """The split with raw ids, as a pandas DataFrame (user, item, rating[, timestamp])."""
        import pandas as pd

        part = self.split(name)
        columns = {
            "user": self.user_ids[part.users],
            "item": self.item_ids[part.items],
            "rating": part.ratings,
        }
        if part.timestamps is not None:
            columns["timestamp"] = part.timestamps
        return pd.DataFrame(columns)

    @classmethod
    def from_tables(
        cls,
        train: Any,
        valid: Any = None,
        test: Any = None,
        *,
        keep_unseen: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> PreparedDataset:
        """Index canonical tables (or pandas/Polars frames with user/item/rating columns).

        Id maps come from train. Valid/test rows whose user or item is not in train are
        dropped (the paper's rule) and counted in ``meta["dropped_unseen"]``, unless
        `keep_unseen`, in which case the maps cover every split.
        """
        import polars as pl

        from deeprec.data.indexing import LABELS, TRAIN, Columns, restrict
        from deeprec.data.table import ITEM, TIMESTAMP, USER, to_ratings_table

        tables = {"train": to_ratings_table(train)}
        for name, frame in (("valid", valid), ("test", test)):
            if frame is not None:
                tables[name] = to_ratings_table(frame)
        if tables["train"].height == 0:
            raise DataError("the training split is empty")
        for column in (USER, ITEM):
            dtypes = {t.schema[column] for t in tables.values()}
            if len(dtypes) > 1:  # e.g. int ids in train, string ids in test: compare as text
                for name in tables:
                    tables[name] = tables[name].with_columns(pl.col(column).cast(pl.String))
        if not all(TIMESTAMP in t.columns for t in tables.values()):
            tables = {k: t.drop(TIMESTAMP, strict=False) for k, t in tables.items()}
        labels = np.concatenate(
            [np.full(t.height, LABELS[name], dtype=np.int8) for name, t in tables.items()]
        )
        cols = Columns.from_table(pl.concat(list(tables.values())), labels)
        rows = np.ones(len(cols), dtype=bool) if keep_unseen else labels == TRAIN
        user_ids, users = restrict(cols.users, cols.user_ids, rows)
        item_ids, items = restrict(cols.items, cols.item_ids, rows)
        parts, dropped = split_arrays(cols, users, items)
        info = dict(meta or {})
        info.setdefault("dropped_unseen", {k: dropped[k] for k in tables if k != "train"})
        info.setdefault("rating_range", list(_range(parts["train"].ratings)))
        return cls(user_ids=user_ids, item_ids=item_ids, meta=info, **parts)

    # ------------------------------------------------------------------ disk
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write atomically: a temporary directory renamed into place when complete."""
        target = Path(path)
        meta = dict(self.meta)
        meta.setdefault("format_version", FORMAT_VERSION)
        meta["n_users"] = self.n_users
        meta["n_items"] = self.n_items
        meta.setdefault("rating_range", list(self.rating_range))
        with atomic_directory(target, overwrite=overwrite) as tmp:
            _save_array(tmp / "user_ids.npy", self.user_ids)
            _save_array(tmp / "item_ids.npy", self.item_ids)
            for name in SPLITS:
                part = self.split(name)
                folder = tmp / name
                folder.mkdir()
                _save_array(folder / "users.npy", part.users.astype(np.int32))
                _save_array(folder / "items.npy", part.items.astype(np.int32))
                _save_array(folder / "ratings.npy", part.ratings.astype(np.float32))
                if part.timestamps is not None:
                    _save_array(folder / "timestamps.npy", part.timestamps.astype(np.int64))
            if self.items is not None:
                self.items.write_parquet(tmp / ITEMS_FILE, statistics=False)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        self.meta = meta
        return target

    @classmethod
    def load(cls, path: str | Path) -> PreparedDataset:
        root = Path(path)
        meta_path = root / "meta.json"
        if not meta_path.is_file():
            raise DataError("not a prepared dataset (meta.json is missing)", path=root)
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # binary junk: issue 8
            raise DataError(f"meta.json is not valid JSON ({exc})", path=meta_path) from exc
        parts = {}
        for name in SPLITS:
            folder = root / name
            ts_path = folder / "timestamps.npy"
            parts[name] = Split(
                users=_load_array(folder / "users.npy"),
                items=_load_array(folder / "items.npy"),
                ratings=_load_array(folder / "ratings.npy"),
                timestamps=_load_array(ts_path) if ts_path.exists() else None,
            )
        dataset = cls(
            user_ids=_load_array(root / "user_ids.npy"),
            item_ids=_load_array(root / "item_ids.npy"),
            meta=meta,
            items=_load_items(root / ITEMS_FILE),
            **parts,
        )
        dataset.validate(source=root)
        return dataset

    def validate(self, source: str | Path | None = None) -> None:
        """Check index bounds and lengths so a damaged directory fails loudly, not later."""
        for name in SPLITS:
            part = self.split(name)
            n = len(part)
            lengths = {part.items.shape[0], part.ratings.shape[0]}
            if part.timestamps is not None:
                lengths.add(part.timestamps.shape[0])
            if lengths != {n}:
                raise DataError(f"split {name!r} has arrays of different lengths", path=source)
            if n and (part.users.min() < 0 or part.users.max() >= self.n_users):
                raise DataError(f"split {name!r} has user indices out of range", path=source)
            if n and (part.items.min() < 0 or part.items.max() >= self.n_items):
                raise DataError(f"split {name!r} has item indices out of range", path=source)


def split_arrays(cols: Any, users: np.ndarray, items: np.ndarray) -> tuple[dict, dict]:
    """Splits from labelled columns (see deeprec.data.indexing) and per-split unseen drops.

    `users`/`items` are final indices, -1 for ids outside the maps (those rows are dropped).
    """
    from deeprec.data.indexing import LABELS

    known = (users >= 0) & (items >= 0)
    parts: dict[str, Split] = {}
    dropped: dict[str, int] = {}
    for name in SPLITS:
        mask = cols.labels == LABELS[name]
        keep = mask & known
        dropped[name] = int(mask.sum() - keep.sum())
        parts[name] = Split(
            users=users[keep].astype(np.int32),
            items=items[keep].astype(np.int32),
            ratings=cols.ratings[keep].astype(np.float32),
            timestamps=None if cols.timestamps is None else cols.timestamps[keep],
        )
    return parts, dropped


def _range(values: np.ndarray) -> tuple[float, float]:
    if values.shape[0] == 0:
        return (0.0, 0.0)
    return float(values.min()), float(values.max())


def _save_array(path: Path, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    if array.dtype == object:
        array = array.astype(np.str_)
    np.save(path, array, allow_pickle=False)


def _load_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError("file of the prepared dataset is missing", path=path)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:  # EOFError: empty file (issue 8)
        raise DataError(f"cannot read array ({exc or 'empty file'})", path=path) from exc


def _load_items(path: Path) -> Any:
    """The optional item metadata table (None when the dataset has none)."""
    if not path.is_file():
        return None
    import polars as pl

    try:
        table = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read item metadata ({exc})", path=path) from exc
    if not {"item", "title"} <= set(table.columns):
        raise DataError("item metadata needs the columns item and title", path=path)
    if "genres" not in table.columns:
        table = table.with_columns(pl.lit(None, dtype=pl.String).alias("genres"))
    return table.select("item", "title", "genres")
