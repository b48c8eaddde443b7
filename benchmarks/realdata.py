"""The real-data splits the accuracy benchmark and tuning scripts use (read from shared/data).

- ML-100K u1: u1.base is training; a seeded random 5% of it is carved out as validation
  (never u1.test); u1.test is the test set.
- ML-1M subset (users 1-2999): time split built here with Polars until the data helper's
  `time-quantile:Q` split lands: the latest 10% of ratings by timestamp form the test window;
  test-window ratings of users/items absent from training are dropped; the rest are split at
  random 50/50 into validation and test (the paper's Netflix protocol).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl

from deeprec.data.dataset import PreparedDataset


def _shared() -> Path:
    env = os.environ.get("DEEPREC_SHARED_DATA")
    if env:
        return Path(env).resolve()
    for candidate in (
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data",
        Path("/work/shared/data"),
    ):
        if candidate.is_dir():
            return candidate.resolve()
    return Path("/work/shared/data")


SHARED = _shared()


def _read_tab(path: Path) -> pl.DataFrame:
    return pl.read_csv(
        path,
        separator="\t",
        has_header=False,
        new_columns=["user", "item", "rating", "timestamp"],
        schema_overrides={"rating": pl.Float32},
    )


def ml100k_u1(valid_fraction: float = 0.05, seed: int = 0, root: Path = SHARED) -> PreparedDataset:
    base = _read_tab(root / "ml-100k" / "u1.base")
    test = _read_tab(root / "ml-100k" / "u1.test")
    rng = np.random.default_rng(seed)
    is_valid = rng.random(base.height) < valid_fraction
    train = base.filter(pl.Series(~is_valid))
    valid = base.filter(pl.Series(is_valid))
    return PreparedDataset.from_tables(
        train,
        valid,
        test,
        meta={"split": f"ml-100k u1 (valid: random {valid_fraction:g} of u1.base, seed {seed})"},
    )


def read_ml1m_subset(root: Path = SHARED) -> pl.DataFrame:
    import gzip

    with gzip.open(root / "ml-1m-users1-2999" / "ratings.dat.gz", "rt") as handle:
        text = handle.read()
    rows = np.array(text.replace("::", "\t").split(), dtype=np.int64).reshape(-1, 4)
    return pl.DataFrame(
        {
            "user": rows[:, 0],
            "item": rows[:, 1],
            "rating": rows[:, 2].astype(np.float32),
            "timestamp": rows[:, 3],
        }
    )


def time_split(
    table: pl.DataFrame, test_fraction: float = 0.1, seed: int = 0, name: str = ""
) -> PreparedDataset:
    """Latest `test_fraction` of ratings (by timestamp) as the test window, 50/50 valid/test."""
    table = table.sort(["timestamp", "user", "item"])
    cut = round(table.height * (1 - test_fraction))
    train = table.head(cut)
    window = table.slice(cut)
    rng = np.random.default_rng(seed)
    to_valid = rng.random(window.height) < 0.5
    return PreparedDataset.from_tables(
        train,
        window.filter(pl.Series(to_valid)),
        window.filter(pl.Series(~to_valid)),
        meta={
            "split": f"{name} time split: latest {test_fraction:g} by timestamp, 50/50 valid/test (seed {seed})"
        },
    )


def ml1m_time(test_fraction: float = 0.1, seed: int = 0, root: Path = SHARED) -> PreparedDataset:
    return time_split(read_ml1m_subset(root), test_fraction, seed, name="ml-1m users 1-2999")


def ml_latest_small_time(
    test_fraction: float = 0.1, seed: int = 0, root: Path = SHARED
) -> PreparedDataset:
    frame = pl.read_csv(root / "ml-latest-small" / "ratings.csv")
    frame = frame.rename({"userId": "user", "movieId": "item"}).with_columns(
        pl.col("rating").cast(pl.Float32)
    )
    return time_split(frame, test_fraction, seed, name="ml-latest-small")


def filmtrust_random(
    valid_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0, root: Path = SHARED
) -> PreparedDataset:
    frame = pl.read_csv(
        root / "filmtrust" / "ratings.txt",
        separator=" ",
        has_header=False,
        new_columns=["user", "item", "rating"],
    )
    frame = frame.unique(["user", "item"], keep="last", maintain_order=True).with_columns(
        pl.col("rating").cast(pl.Float32)
    )
    rng = np.random.default_rng(seed)
    u = rng.random(frame.height)
    test = u < test_fraction
    valid = (u >= test_fraction) & (u < test_fraction + valid_fraction)
    return PreparedDataset.from_tables(
        frame.filter(pl.Series(~test & ~valid)),
        frame.filter(pl.Series(valid)),
        frame.filter(pl.Series(test)),
        meta={
            "split": f"filmtrust random {1 - valid_fraction - test_fraction:g}/{valid_fraction:g}/{test_fraction:g} (seed {seed})"
        },
    )
