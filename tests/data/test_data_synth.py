"""The synthetic generator: exact sizes, valid values, structure, layouts, determinism."""

from __future__ import annotations

import numpy as np
import polars as pl

from deeprec.data.prepare import prepare_dataset
from deeprec.data.readers import read_ratings, resolve_files
from deeprec.data.synth import generate, synthesize

from .datahelpers import tree_digest


def test_generate_sizes_values_and_structure():
    log = generate(3_000, 400, 120_000, seed=0)
    assert log["user"].shape[0] == 120_000
    assert np.unique(log["user"]).shape[0] == 3_000  # every user rates
    key = log["user"].astype(np.int64) * 1000 + log["item"]
    assert np.unique(key).shape[0] == key.shape[0]  # no duplicate (user, item)
    assert set(np.unique(log["rating"])) <= {1, 2, 3, 4, 5}
    assert log["item"].min() >= 1 and log["item"].max() <= 400
    days = log["day"]
    assert days.min() >= 10926 and days.max() <= 13148  # 1999-12-01 .. 2005-12-31
    # Power law: the top 10% of items get far more than 10% of the ratings.
    per_item = np.sort(np.bincount(log["item"]))[::-1]
    assert per_item[:40].sum() > 0.3 * per_item.sum()
    # Heavy-tailed activity and growth over time.
    per_user = np.bincount(np.unique(log["user"], return_inverse=True)[1])
    assert np.sort(per_user)[::-1][:300].sum() > 0.25 * per_user.sum()  # top 10% of users
    assert (days >= 12784).sum() > 2 * (days < 11322).sum()  # 2005 vs the first 13 months
    # Ratings carry signal: user means spread more than chance.
    assert 3.2 < log["rating"].mean() < 4.0


def test_layouts_parse_identically_and_are_deterministic(tmp_path):
    synthesize(tmp_path / "a", preset="tiny", fmt="netflix-both", seed=7)
    synthesize(tmp_path / "b", preset="tiny", fmt="netflix-both", seed=7)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    synthesize(tmp_path / "c", preset="tiny", fmt="csv", seed=7)
    mv = read_ratings(resolve_files([tmp_path / "a"], "netflix"), "netflix")
    combined_files = sorted((tmp_path / "a").glob("combined_data_*.txt"))
    assert len(combined_files) == 4
    combined = read_ratings(combined_files, "netflix")
    assert mv.equals(combined) and mv.height == 50_000
    csv = read_ratings([tmp_path / "c" / "ratings.csv"], "csv")
    assert csv.sort(["user", "item"]).equals(mv.sort(["user", "item"]))


def test_small_preset_gives_usable_netflix_splits(tmp_path):
    synthesize(tmp_path / "raw", preset="tiny", seed=0)
    for spec in ("netflix-full", "netflix-3m", "netflix-1y"):
        ds = prepare_dataset([tmp_path / "raw"], "netflix", spec)
        assert len(ds.train) > 1000 and len(ds.test) > 100, spec
        assert ds.meta["duplicates"] == 0
    full = prepare_dataset([tmp_path / "raw"], "netflix", "netflix-full")
    share = (len(full.valid) + len(full.test)) / 50_000
    assert 0.005 < share < 0.1  # December 2005 is a small slice, as in the paper
    assert pl.Series(full.train.ratings).is_in([1.0, 2.0, 3.0, 4.0, 5.0]).all()
