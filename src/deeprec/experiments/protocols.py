"""Standard benchmark protocols as folds of (train, valid, test) DataFrames.

A fold's validation part is always carved from its training part with a seeded fraction,
never from test, so early stopping and tuning cannot see test ratings. Any estimator that
follows ``fit(train, valid)`` / ``score(test)`` runs through :func:`run_protocol`.

Protocols:
- :func:`movielens_100k_folds`: the official ``u1..u5.base/.test`` files of ML-100K.
- :func:`random_splits`: random 90/10 (or any fraction) splits, one per seed.
- :func:`column_split_folds`: a CSV/Parquet file whose own column says train or test (how the
  GC-MC/IGMC benchmark matrices are often shared).

TODO(dedupe): ``read_tab_ratings`` is a tiny local reader for ML-100K's tab-separated files;
replace it with ``deeprec.data`` readers once the data branch is merged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from deeprec.data.carve import carve_mask
from deeprec.data.table import to_ratings_table
from deeprec.errors import ConfigError, DataError


@dataclass(frozen=True)
class Fold:
    """One train/valid/test triple of raw-id pandas DataFrames (user, item, rating[, timestamp])."""

    name: str
    train: pd.DataFrame
    valid: pd.DataFrame | None
    test: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ readers
def read_tab_ratings(path: str | Path) -> pd.DataFrame:
    """Read ``user<TAB>item<TAB>rating<TAB>timestamp`` (ML-100K ``u.data``, ``u1.base``...)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("ratings file not found", path=path)
    try:
        frame = pl.read_csv(
            path,
            separator="\t",
            has_header=False,
            new_columns=["user", "item", "rating", "timestamp"],
            schema_overrides={
                "column_1": pl.Int64,
                "column_2": pl.Int64,
                "column_3": pl.Float64,
                "column_4": pl.Int64,
            },
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read tab-separated ratings ({exc})", path=path) from exc
    return _to_pandas(frame)


def _to_pandas(frame: Any) -> pd.DataFrame:
    return to_ratings_table(frame).to_pandas()


def carve_validation(
    train: pd.DataFrame, fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Move a seeded random `fraction` of the training rows into a validation set; every user
    and item keeps at least one training rating (data/carve.py)."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"valid_fraction must be in [0, 1), got {fraction!r}")
    if fraction == 0.0:
        return train.reset_index(drop=True), None
    rng = np.random.default_rng(seed)
    users = pd.factorize(train["user"])[0]
    items = pd.factorize(train["item"])[0]
    picked = carve_mask(users, items, fraction, rng)
    return train[~picked].reset_index(drop=True), train[picked].reset_index(drop=True)


# --------------------------------------------------------------- protocols
def movielens_100k_folds(
    folder: str | Path,
    folds: Sequence[int] = (1, 2, 3, 4, 5),
    *,
    valid_fraction: float = 0.05,
    seed: int = 0,
) -> Iterator[Fold]:
    """The official ML-100K folds ``u{k}.base`` / ``u{k}.test`` (k in 1..5)."""
    folder = Path(folder)
    for k in folds:
        if k not in (1, 2, 3, 4, 5):
            raise ConfigError(f"ML-100K folds are 1..5, got {k!r}")
        base = read_tab_ratings(folder / f"u{k}.base")
        test = read_tab_ratings(folder / f"u{k}.test")
        train, valid = carve_validation(base, valid_fraction, seed + k)
        yield Fold(
            f"u{k}",
            train,
            valid,
            test,
            {"protocol": "ml-100k-official", "fold": k, "valid_fraction": valid_fraction},
        )


def random_splits(
    ratings: Any,
    seeds: Iterable[int] = (0, 1, 2, 3, 4),
    *,
    test_fraction: float = 0.1,
    valid_fraction: float = 0.05,
    name: str = "random",
) -> Iterator[Fold]:
    """One random ``1 - test_fraction`` / ``test_fraction`` split of the ratings per seed.

    The validation part is a further `valid_fraction` of the training part (same seed).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    frame = ratings if isinstance(ratings, pd.DataFrame) else _to_pandas(ratings)
    frame = _to_pandas(frame)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        n_test = round(test_fraction * len(frame))
        is_test = np.zeros(len(frame), dtype=bool)
        is_test[rng.permutation(len(frame))[:n_test]] = True
        train, valid = carve_validation(
            frame[~is_test].reset_index(drop=True), valid_fraction, seed + 10_000
        )
        yield Fold(
            f"{name}-seed{seed}",
            train,
            valid,
            frame[is_test].reset_index(drop=True),
            {
                "protocol": f"random-{1 - test_fraction:g}/{test_fraction:g}",
                "seed": seed,
                "valid_fraction": valid_fraction,
            },
        )


def column_split_folds(
    path: str | Path,
    *,
    split_column: str = "split",
    train_values: Sequence[str] = ("train",),
    test_values: Sequence[str] = ("test",),
    valid_values: Sequence[str] = ("valid", "val", "validation"),
    columns: dict[str, str] | None = None,
    valid_fraction: float = 0.05,
    seed: int = 0,
    separator: str = ",",
) -> Iterator[Fold]:
    """A CSV (or Parquet) file whose `split_column` marks each rating train, valid or test.

    Rows marked valid become the validation set; without any, a seeded `valid_fraction` of
    the training rows is carved off instead. Unknown split labels are an error.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("ratings file not found", path=path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_csv(path, separator=separator, infer_schema_length=10_000)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read ratings table ({exc})", path=path) from exc
    if split_column not in frame.columns:
        raise DataError(
            f"no split column {split_column!r}; columns are {frame.columns}",
            path=path,
            field=split_column,
        )
    labels = frame.get_column(split_column).cast(pl.String).str.strip_chars().str.to_lowercase()
    known = {*map(str.lower, train_values), *map(str.lower, test_values)}
    known |= set(map(str.lower, valid_values))
    bad = labels.is_null() | ~labels.is_in(sorted(known))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"unknown split label {labels[row]!r}; expected one of {sorted(known)}",
            path=path,
            line=row + 2,  # 1-based, after the header line
            field=split_column,
        )

    def part(values: Sequence[str]) -> pd.DataFrame:
        mask = labels.is_in([v.lower() for v in values])
        table = to_ratings_table(frame.filter(mask), columns=columns)
        return table.to_pandas()

    train, test, valid = part(train_values), part(test_values), part(valid_values)
    if len(train) == 0 or len(test) == 0:
        raise DataError("the file has no training or no test rows", path=path, field=split_column)
    if len(valid) == 0:
        train, valid_or_none = carve_validation(train, valid_fraction, seed)
    else:
        valid_or_none = valid
    yield Fold(
        path.stem,
        train,
        valid_or_none,
        test,
        {"protocol": f"column:{split_column}", "valid_fraction": valid_fraction},
    )


# --------------------------------------------------------------- running
@dataclass
class ProtocolResult:
    """Per-fold metrics plus mean and (sample) standard deviation of each numeric metric."""

    name: str
    folds: list[dict[str, Any]]
    mean: dict[str, float]
    std: dict[str, float]

    def to_rows(self) -> list[dict[str, Any]]:
        return [{"model": self.name, **row} for row in self.folds]


def run_protocol(
    estimator_factory: Callable[[], Any],
    folds: Iterable[Fold],
    *,
    name: str | None = None,
    on_fold: Callable[[dict[str, Any]], None] | None = None,
) -> ProtocolResult:
    """Fit a fresh estimator per fold on (train, valid), score on test; aggregate.

    `estimator_factory()` must return an unfitted object with ``fit(train, valid)`` and
    ``score(test) -> dict`` (every deeprec model; wrappers for other libraries).
    """
    rows: list[dict[str, Any]] = []
    label = name
    for fold in folds:
        estimator = estimator_factory()
        label = label or type(estimator).__name__
        start = time.perf_counter()
        estimator.fit(fold.train, fold.valid)
        fit_seconds = time.perf_counter() - start
        metrics = estimator.score(fold.test)
        row = {
            "fold": fold.name,
            **{k: v for k, v in metrics.items()},
            "fit_seconds": fit_seconds,
            "n_train": len(fold.train),
            "n_valid": 0 if fold.valid is None else len(fold.valid),
        }
        best_epoch = getattr(estimator, "best_epoch_", None)
        if best_epoch is not None:
            row["best_epoch"] = int(best_epoch)
        rows.append(row)
        if on_fold is not None:
            on_fold(row)
    if not rows:
        raise ConfigError("run_protocol got no folds")
    numeric = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and k != "fold"]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in numeric}
    std = {
        k: float(np.std([r[k] for r in rows], ddof=1)) if len(rows) > 1 else math.nan
        for k in numeric
    }
    return ProtocolResult(label or "model", rows, mean, std)
