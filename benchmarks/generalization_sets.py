"""The rating sets of the generalisation benchmark (benchmarks/generalization.py).

Real sets come from ../shared/data (licences forbid shipping them); synthetic sets are
generated here from a seed. Every set is prepared with deeprec's own `prepare_dataset`,
exactly as `deeprec prepare` would, so a user's validation carve-out and unseen-id rules
apply to every method alike.

- ml100k: ML-100K u1.base/u1.test (`given`; validation carved from u1.base).
- ml1m: the ML-1M subset (users 1-2999), `time-quantile:0.9` (latest 10% by time, 50/50
  validation/test).
- mlls: ml-latest-small (half stars 0.5-5), `random:0.8,0.1,0.1`.
- filmtrust: FilmTrust (0.5-4 in half steps), `random:0.8,0.1,0.1`.
- movietweetings: MovieTweetings 100K (0-10), `random:0.8,0.1,0.1`.
- synth100: synthetic, integer ratings 1-100 (biases + low-rank taste + noise).
- synthcont: synthetic, continuous ratings in -10..10 (Jester-like).
- sparse: 5,000 ratings of the ML-1M subset drawn among 3,000 random items (about 1.7
  ratings per user), `random:0.8,0.1,0.1`.
- dense: the ML-1M subset's 100 most-rated items, users who rated at least 50 of them,
  `random:0.8,0.1,0.1`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from deeprec.data.dataset import PreparedDataset
from deeprec.data.prepare import prepare_dataset
from realdata import SHARED

RANDOM_SPLIT = "random:0.8,0.1,0.1"


def _prepared_frame(frame: pd.DataFrame, seed: int) -> PreparedDataset:
    """A frame (user, item, rating) prepared with a seeded random 80/10/10 split."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ratings.csv"
        frame[["user", "item", "rating"]].to_csv(path, index=False)
        return prepare_dataset([path], "csv", RANDOM_SPLIT, seed=seed)


def ml100k(seed: int = 0) -> PreparedDataset:
    base = SHARED / "ml-100k"
    return prepare_dataset(
        [base / "u1.base", base / "u1.test"], "movielens", "given", seed=seed, valid_fraction=0.1
    )


def ml1m(seed: int = 0) -> PreparedDataset:
    path = SHARED / "ml-1m-users1-2999" / "ratings.dat.gz"
    return prepare_dataset([path], "movielens", "time-quantile:0.9", seed=seed)


def mlls(seed: int = 0) -> PreparedDataset:
    path = SHARED / "ml-latest-small" / "ratings.csv"
    return prepare_dataset([path], "csv", RANDOM_SPLIT, seed=seed)


def filmtrust(seed: int = 0) -> PreparedDataset:
    path = SHARED / "filmtrust" / "ratings.txt"
    return prepare_dataset([path], "csv", RANDOM_SPLIT, seed=seed, columns="user=0,item=1,rating=2")


def movietweetings(seed: int = 0) -> PreparedDataset:
    path = SHARED / "movietweetings-100k" / "ratings.dat"
    return prepare_dataset([path], "movielens", RANDOM_SPLIT, seed=seed, rating_scale=(0, 10))


def _ml1m_frame() -> pd.DataFrame:
    path = SHARED / "ml-1m-users1-2999" / "ratings.dat.gz"
    frame = pd.read_csv(path, sep="::", engine="python", header=None)
    frame.columns = ["user", "item", "rating", "timestamp"]
    return frame


def sparse(seed: int = 0) -> PreparedDataset:
    frame = _ml1m_frame()
    rng = np.random.default_rng([seed, 11])
    items = rng.choice(np.unique(frame["item"]), 3000, replace=False)
    pool = frame[frame["item"].isin(items)]
    picked = pool.iloc[np.sort(rng.choice(len(pool), 5000, replace=False))]
    return _prepared_frame(picked, seed)


def dense(seed: int = 0) -> PreparedDataset:
    frame = _ml1m_frame()
    top = frame["item"].value_counts().index[:100]
    part = frame[frame["item"].isin(top)]
    counts = part["user"].value_counts()
    part = part[part["user"].isin(counts.index[counts >= 50])]
    return _prepared_frame(part, seed)


def synthetic_frame(scale: str, seed: int = 0) -> pd.DataFrame:
    """Biases + rank-8 taste + noise over power-law users and items; `scale` is "1-100"
    (integers) or "-10..10" (continuous)."""
    rng = np.random.default_rng([seed, 100 if scale == "1-100" else 10])
    n_users, n_items, n_ratings = 3000, 1500, 120_000
    user_weight = rng.pareto(1.5, n_users) + 1.0
    item_weight = rng.pareto(1.2, n_items) + 1.0
    users = rng.choice(n_users, n_ratings, p=user_weight / user_weight.sum())
    items = rng.choice(n_items, n_ratings, p=item_weight / item_weight.sum())
    pairs = np.unique(np.stack([users, items], 1), axis=0)
    users, items = pairs[:, 0], pairs[:, 1]
    p = rng.normal(0, 0.5, (n_users, 8))
    q = rng.normal(0, 0.5, (n_items, 8))
    b_u, b_i = rng.normal(0, 0.4, n_users), rng.normal(0, 0.6, n_items)
    signal = b_u[users] + b_i[items] + np.einsum("ij,ij->i", p[users], q[items])
    noise = rng.normal(0, 0.8, users.shape[0])
    z = signal + noise  # about unit-free, std ~1.3
    if scale == "1-100":
        rating = np.clip(np.round(55 + 18 * z), 1, 100)
    else:
        rating = np.clip(1.5 + 4.0 * z, -10, 10).round(2)
    return pd.DataFrame({"user": users + 1, "item": items + 1, "rating": rating})


def synth100(seed: int = 0) -> PreparedDataset:
    return _prepared_frame(synthetic_frame("1-100", seed), seed)


def synthcont(seed: int = 0) -> PreparedDataset:
    return _prepared_frame(synthetic_frame("-10..10", seed), seed)


SETS: dict[str, tuple[str, Callable[..., PreparedDataset]]] = {
    "ml100k": ("ML-100K u1.base/u1.test (given)", ml100k),
    "ml1m": ("ML-1M users 1-2999, time-quantile:0.9", ml1m),
    "mlls": ("ml-latest-small, random 80/10/10", mlls),
    "filmtrust": ("FilmTrust, random 80/10/10", filmtrust),
    "movietweetings": ("MovieTweetings 100K (0-10), random 80/10/10", movietweetings),
    "synth100": ("synthetic 1-100 integers, random 80/10/10", synth100),
    "synthcont": ("synthetic continuous -10..10, random 80/10/10", synthcont),
    "sparse": ("ML-1M subset: 5,000 ratings over 3,000 items, random 80/10/10", sparse),
    "dense": ("ML-1M subset: top-100 items x users with >= 50 of them, random 80/10/10", dense),
}
