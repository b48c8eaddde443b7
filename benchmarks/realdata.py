"""The real-data splits of the accuracy benchmark and tuning scripts (from shared/data),
built with deeprec's own `prepare_dataset`, exactly as `deeprec prepare` would.

- ML-100K u1: `given` split of u1.base/u1.test; a seeded 5% of u1.base becomes validation
  (never u1.test). u1.test ratings of items absent from u1.base (37 of 20,000) are dropped
  for every method, so all methods are scored on the same 19,963 ratings.
- ML-1M subset (users 1-2999): `time-quantile:0.9`: the latest 10% of ratings by timestamp
  form the holdout window; its ratings of users/items unseen in training are dropped, the
  rest are split 50/50 into validation and test (seeded): the paper's Netflix protocol.
- ml-latest-small: the same `time-quantile:0.9` split; FilmTrust: `random:0.8,0.1,0.1`.
"""

from __future__ import annotations

import os
from pathlib import Path

from deeprec.data.dataset import PreparedDataset
from deeprec.data.prepare import prepare_dataset


def _shared() -> Path:
    env = os.environ.get("DEEPREC_SHARED_DATA")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    for candidate in (here, Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate.resolve()
    return here


SHARED = _shared()

SPLITS = {
    "ml100k": "ML-100K u1.base/u1.test (given; valid = seeded 5% of u1.base)",
    "ml1m": "ML-1M users 1-2999, time-quantile:0.9 (latest 10% by time, 50/50 valid/test)",
    "mlls": "ml-latest-small, time-quantile:0.9 (latest 10% by time, 50/50 valid/test)",
    "filmtrust": "FilmTrust, random:0.8,0.1,0.1",
}


def ml100k_u1(seed: int = 0, root: Path = SHARED) -> PreparedDataset:
    base = root / "ml-100k"
    return prepare_dataset(
        [base / "u1.base", base / "u1.test"], "movielens", "given", seed=seed, valid_fraction=0.05
    )


def ml1m_time(seed: int = 0, root: Path = SHARED) -> PreparedDataset:
    path = root / "ml-1m-users1-2999" / "ratings.dat.gz"
    return prepare_dataset([path], "movielens", "time-quantile:0.9", seed=seed)


def ml_latest_small_time(seed: int = 0, root: Path = SHARED) -> PreparedDataset:
    path = root / "ml-latest-small" / "ratings.csv"
    return prepare_dataset([path], "csv", "time-quantile:0.9", seed=seed)


def filmtrust_random(seed: int = 0, root: Path = SHARED) -> PreparedDataset:
    path = root / "filmtrust" / "ratings.txt"
    return prepare_dataset(
        [path], "csv", "random:0.8,0.1,0.1", seed=seed, columns="user=0,item=1,rating=2"
    )


LOADERS = {
    "ml100k": ml100k_u1,
    "ml1m": ml1m_time,
    "mlls": ml_latest_small_time,
    "filmtrust": filmtrust_random,
}
