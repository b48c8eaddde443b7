"""Every rule of the paper's Netflix splits on a hand-built tree, and the general splits."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

from deeprec.data.prepare import prepare_dataset
from deeprec.data.splits import parse_split
from deeprec.errors import DataError, DataWarning

from .datahelpers import write_netflix_tree

# (movie, user, rating, date). Users 1..6, movies 1..4.
ROWS = [
    (1, 1, 3, "1999-11-30"),  # before netflix-full's train window: excluded
    (1, 2, 4, "1999-12-01"),  # first train day (inclusive)
    (2, 1, 5, "2005-08-31"),  # full: train; 3m: before its window, excluded
    (2, 2, 2, "2005-09-01"),  # 3m: first train day (inclusive)
    (3, 3, 1, "2005-11-30"),  # last train day (inclusive)
    (1, 3, 4, "2005-11-29"),
    (2, 4, 3, "2005-10-15"),
    (2, 4, 1, "2005-10-01"),  # duplicate, later in the file but older: the Oct-15 rating wins
    (3, 4, 4, "2005-10-16"),  # replaced by its December duplicate below
    # December 2005 (the test window): 2005-12-01 and 2005-12-31 are inside.
    (1, 4, 5, "2005-12-01"),
    (2, 3, 4, "2005-12-31"),
    (3, 2, 3, "2005-12-10"),
    (3, 4, 5, "2005-12-12"),  # duplicate of (3, 4): the latest wins, so it is a test-window row
    (3, 1, 2, "2005-12-13"),  # user 1 is known in full, unseen in 3m (its rating is in August)
    (1, 5, 3, "2005-12-20"),  # user 5 never rates before December: dropped as unseen
    (4, 2, 4, "2005-12-21"),  # movie 4 is only rated in December: dropped as unseen
    (2, 6, 1, "2006-01-01"),  # after the test window: excluded
]


def _prepare(tmp_path, spec, **kw):
    root = (
        write_netflix_tree(tmp_path / "nf", ROWS)
        if not (tmp_path / "nf").exists()
        else tmp_path / "nf"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return prepare_dataset([root], "netflix", spec, **kw)


def _raw(ds, name):
    frame = ds.to_pandas(name)
    return {(int(r.user), int(r.item)) for r in frame.itertuples()}


def test_netflix_full_rules(tmp_path):
    ds = _prepare(tmp_path, "netflix-full", seed=3)
    assert ds.meta["duplicates"] == 2
    # (user, movie) pairs in 1999-12-01..2005-11-30, both ends included.
    assert _raw(ds, "train") == {(2, 1), (1, 2), (2, 2), (3, 3), (3, 1), (4, 2)}
    kept = ds.to_pandas("train").set_index(["user", "item"])["rating"]
    assert kept[(4, 2)] == 3.0  # the latest of the duplicates, not the last line
    valid, test = _raw(ds, "valid"), _raw(ds, "test")
    # December rows of known users and movies; user 5 and movie 4 dropped; 2006 excluded.
    assert valid | test == {(4, 1), (3, 2), (2, 3), (4, 3), (1, 3)}
    assert not valid & test
    assert (len(valid), len(test)) == (2, 3)  # 50/50 of 5 rows: floor to validation
    assert ds.meta["dropped_unseen"] == {"holdout": 2}
    assert ds.meta["excluded_outside_windows"] == 2  # 1999-11-30 and 2006-01-01
    ts = np.concatenate([ds.valid.timestamps, ds.test.timestamps])
    assert ts.min() == 1133395200 and ts.max() == 1135987200  # 2005-12-01 and 2005-12-31
    assert ds.meta["splits"]["train"] == {
        "users": 4,
        "items": 3,
        "ratings": 6,
        "first": "1999-12-01",
        "last": "2005-11-30",
        "interval": "1999-12-01..2005-11-30",
    }
    assert ds.meta["table1"]["test"]["ratings"] == 5
    assert ds.meta["table1"]["test"]["interval"] == "2005-12-01..2005-12-31"


def test_netflix_3m_rules_and_seed(tmp_path):
    ds = _prepare(tmp_path, "netflix-3m", seed=0)
    assert _raw(ds, "train") == {(2, 2), (3, 3), (3, 1), (4, 2)}  # 2005-09-01..2005-11-30
    assert ds.meta["splits"]["train"]["first"] == "2005-09-01"
    assert ds.meta["excluded_outside_windows"] == 4
    # User 1 (rated only in August) is unseen here too, as are user 5 and movie 4.
    assert _raw(ds, "valid") | _raw(ds, "test") == {(4, 1), (3, 2), (2, 3), (4, 3)}
    assert ds.meta["dropped_unseen"] == {"holdout": 3}
    assert len(ds.valid) == 2 and len(ds.test) == 2
    again = _prepare(tmp_path, "netflix-3m", seed=0)
    assert _raw(again, "valid") == _raw(ds, "valid")
    draws = {frozenset(_raw(_prepare(tmp_path, "netflix-3m", seed=s), "valid")) for s in range(12)}
    assert len(draws) > 1  # the 50/50 draw depends on the seed


def test_keep_unseen_option(tmp_path):
    ds = _prepare(tmp_path, "netflix-full", keep_unseen=True)
    assert 5 in ds.user_ids and 4 in ds.item_ids
    assert ds.meta["dropped_unseen"] == {"holdout": 0}


def _table(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "user": rng.integers(0, 50, n),
            "item": rng.integers(0, 40, n),
            "rating": rng.integers(1, 6, n).astype(np.float32),
            "timestamp": 1_000_000_000 + rng.permutation(n) * 86_400,
        }
    ).unique(["user", "item"], keep="first", maintain_order=True)


def test_time_and_quantile_and_random_and_column(tmp_path):
    frame = _table()
    frame.write_csv(tmp_path / "r.csv")
    path = [tmp_path / "r.csv"]
    ds = prepare_dataset(path, "csv", "time-quantile:0.8", seed=1)
    n = frame.height
    threshold = np.quantile(frame["timestamp"].to_numpy(), 0.8, method="lower")
    assert (ds.train.timestamps <= threshold).all() and (ds.test.timestamps > threshold).all()
    assert len(ds.train) == int((frame["timestamp"] <= threshold).sum())
    assert len(ds.valid) + len(ds.test) + ds.meta["dropped_unseen"]["holdout"] == n - len(ds.train)
    ds = prepare_dataset(path, "csv", "time:2003-06-30:2003-12-31")
    cut, end = 1057017600, 1072915200  # 2003-07-01 and 2004-01-01 00:00 UTC (exclusive)
    assert (ds.train.timestamps < cut).all() and len(ds.train) == int(
        (frame["timestamp"] < cut).sum()
    )
    held = np.concatenate([ds.valid.timestamps, ds.test.timestamps])
    assert (held >= cut).all() and (held < end).all()
    assert ds.meta["excluded_outside_windows"] == int((frame["timestamp"] >= end).sum()) > 0
    ds = prepare_dataset(path, "csv", "random:0.8,0.1,0.1", seed=5)
    assert len(ds.train) == round(0.8 * n)
    assert len(ds.valid) + ds.meta["dropped_unseen"]["valid"] == round(0.1 * n)
    other = prepare_dataset(path, "csv", "random:0.8,0.1,0.1", seed=6)
    assert not np.array_equal(ds.train.ratings, other.train.ratings) or not np.array_equal(
        ds.train.users, other.train.users
    )
    labelled = frame.with_columns(
        pl.Series("part", np.where(np.arange(frame.height) % 4 == 0, "test", "train"))
    )
    labelled.write_csv(tmp_path / "c.csv")
    ds = prepare_dataset([tmp_path / "c.csv"], "csv", "column:part", valid_fraction=0.1, seed=2)
    n_train = int((labelled["part"] == "train").sum())
    assert ds.meta["split"]["valid_from_train"] == round(0.1 * n_train)
    assert len(ds.train) == n_train - round(0.1 * n_train)
    assert len(ds.test) + ds.meta["dropped_unseen"]["test"] == labelled.height - n_train


def test_given_split_uses_files_in_order(tmp_path):
    frame = _table()
    frame.head(600).write_csv(tmp_path / "train.csv")
    frame.slice(600).write_csv(tmp_path / "test.csv")
    files = [tmp_path / "train.csv", tmp_path / "test.csv"]
    ds = prepare_dataset(files, "csv", "given", valid_fraction=0)
    assert len(ds.train) == 600 and len(ds.valid) == 0
    assert len(ds.test) + ds.meta["dropped_unseen"]["test"] == frame.height - 600
    ds = prepare_dataset(files, "csv", "given")
    assert len(ds.train) == 570 and len(ds.valid) == 30  # 5% of train became validation


def test_duplicates_keep_latest_else_last(tmp_path):
    (tmp_path / "d.csv").write_text(
        "user,item,rating,timestamp\n1,1,1,30\n1,1,2,10\n2,1,3,5\n2,1,4,5\n2,2,5,1\n3,1,1,1\n3,3,1,2\n"
    )
    with pytest.warns(DataWarning, match="2 duplicate"):
        ds = prepare_dataset([tmp_path / "d.csv"], "csv", "random:0.5,0.25,0.25", keep_unseen=True)
    assert ds.meta["duplicates"] == 2
    table = pl.concat([pl.from_pandas(ds.to_pandas(s)) for s in ("train", "valid", "test")])
    kept = {(r[0], r[1]): r[2] for r in table.iter_rows()}
    assert kept[(1, 1)] == 1.0  # the latest by timestamp (30), though earlier in the file
    assert kept[(2, 1)] == 4.0  # equal timestamps: the last in the file


@pytest.mark.parametrize(
    "spec", ["netflix-2y", "time:2005-01-01", "random:0.5,0.6,0.1", "time-quantile:1.5", "column:"]
)
def test_bad_split_specs(spec):
    with pytest.raises(DataError, match="split"):
        parse_split(spec)


def test_time_split_needs_timestamps(tmp_path):
    (tmp_path / "r.csv").write_text("user,item,rating\n1,1,3\n2,1,4\n")
    with pytest.raises(DataError, match="needs timestamps"):
        prepare_dataset([tmp_path / "r.csv"], "csv", "netflix-full")


@pytest.mark.filterwarnings("ignore::deeprec.errors.DataWarning")
def test_split_leaving_test_or_train_empty(tmp_path):
    root = write_netflix_tree(tmp_path / "nf", ROWS[:8])  # nothing in December 2005
    with pytest.raises(DataError, match="test set empty"):
        prepare_dataset([root], "netflix", "netflix-full", out=tmp_path / "out")
    with pytest.raises(DataError, match="training set empty"):
        prepare_dataset([root], "netflix", "time:1990-01-01:2010-01-01", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
