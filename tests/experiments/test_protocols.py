"""Benchmark protocols: disjoint parts, validation only from train, aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deeprec.baselines import BiasOnly
from deeprec.errors import DataError
from deeprec.experiments.protocols import (
    carve_validation,
    column_split_folds,
    movielens_100k_folds,
    random_splits,
    run_protocol,
)
from shared_data import shared_file


def _ratings(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pairs = rng.choice(40 * 30, n, replace=False)
    return pd.DataFrame(
        {"user": pairs // 30, "item": pairs % 30, "rating": rng.integers(0, 6, n).astype(float)}
    )


def _keys(frame: pd.DataFrame | None) -> set[tuple[int, int]]:
    if frame is None:
        return set()
    return set(zip(frame["user"].tolist(), frame["item"].tolist(), strict=True))


def test_random_splits_are_disjoint_seeded_and_sized():
    data = _ratings()
    folds = list(random_splits(data, seeds=[0, 1], test_fraction=0.1, valid_fraction=0.1))
    assert [f.name for f in folds] == ["random-seed0", "random-seed1"]
    for fold in folds:
        train, valid, test = _keys(fold.train), _keys(fold.valid), _keys(fold.test)
        assert len(test) == 60 and len(valid) == 54 and len(train) == 486
        assert not (train & test) and not (valid & test) and not (train & valid)
        assert train | valid | test == _keys(data)
    assert _keys(folds[0].test) != _keys(folds[1].test)
    again = next(random_splits(data, seeds=[0], test_fraction=0.1, valid_fraction=0.1))
    assert _keys(again.test) == _keys(folds[0].test)


def test_carve_validation_zero_fraction_gives_none():
    train, valid = carve_validation(_ratings(), 0.0, seed=0)
    assert valid is None and len(train) == 600


def test_column_split_file(tmp_path):
    data = _ratings()
    data["split"] = np.where(np.arange(len(data)) % 5 == 0, "test", "train")
    path = tmp_path / "bench.csv"
    data.rename(columns={"user": "u", "item": "i", "rating": "r"}).to_csv(path, index=False)
    (fold,) = column_split_folds(
        path, columns={"user": "u", "item": "i", "rating": "r"}, valid_fraction=0.1
    )
    assert len(fold.test) == 120 and len(fold.train) + len(fold.valid) == 480
    assert _keys(fold.test) == _keys(data[data["split"] == "test"])
    assert not _keys(fold.valid) & _keys(fold.test)

    data.loc[7, "split"] = "holdout"
    data.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"bench\.csv:9.*'split'.*holdout"):
        list(column_split_folds(path))


def test_run_protocol_aggregates_per_fold():
    folds = list(random_splits(_ratings(), seeds=[0, 1, 2]))
    result = run_protocol(lambda: BiasOnly(reg_user=5, reg_item=5), folds, name="bias")
    rmses = [row["rmse"] for row in result.folds]
    assert len(rmses) == 3 and result.name == "bias"
    assert result.mean["rmse"] == pytest.approx(np.mean(rmses))
    assert result.std["rmse"] == pytest.approx(np.std(rmses, ddof=1))
    direct = BiasOnly(reg_user=5, reg_item=5).fit(folds[1].train, folds[1].valid)
    assert direct.score(folds[1].test)["rmse"] == rmses[1]


@pytest.mark.realdata
def test_movielens_100k_official_folds():
    folder = shared_file("ml-100k", "u1.base").parent
    folds = list(movielens_100k_folds(folder, folds=[1, 2], valid_fraction=0.05, seed=0))
    for fold in folds:
        # 5% of 80,000, less the few that would take a user's or item's last training rating
        assert len(fold.train) + len(fold.valid) == 80_000 and 3_980 <= len(fold.valid) <= 4_000
        assert set(fold.train["user"]) == set(fold.train["user"]) | set(fold.valid["user"])
        assert set(fold.train["item"]) == set(fold.train["item"]) | set(fold.valid["item"])
        assert len(fold.test) == 20_000
        assert not (_keys(fold.train) | _keys(fold.valid)) & _keys(fold.test)
        assert fold.train["rating"].dtype == np.float32
