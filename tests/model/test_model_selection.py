"""deeprec.model_selection.cross_validate: Surprise-style folds, scores and table."""

from __future__ import annotations

import numpy as np
import pytest

from deeprec import DeepRec
from deeprec.baselines import BiasOnly
from deeprec.errors import DataError
from deeprec.model_selection import cross_validate, k_fold_indices
from deeprec.recommend.honesty import low_rank_ratings


@pytest.fixture(scope="module")
def frame():
    return low_rank_ratings(100, 40, density=0.3, seed=5)


def test_folds_partition_the_ratings() -> None:
    folds = k_fold_indices(103, 5, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(103))
    assert {len(f) for f in folds} <= {20, 21}
    assert all(np.array_equal(a, b) for a, b in zip(folds, k_fold_indices(103, 5, 1), strict=True))
    with pytest.raises(DataError, match="cv must be"):
        k_fold_indices(10, 1, 0)


def test_cross_validate_scores_each_fold_and_prints_a_table(frame) -> None:
    lines: list[str] = []
    result = cross_validate(
        DeepRec(hidden=[8], epochs=2, verbose=False), frame, cv=3, seed=2, echo=lines.append
    )
    assert set(result) == {"test_rmse", "test_mae", "fit_time", "test_time", "n_test", "n_unknown"}
    assert result["test_rmse"].shape == (3,) and (result["test_rmse"] > result["test_mae"]).all()
    assert int(result["n_test"].sum()) == len(frame)
    text = "\n".join(lines)
    assert "Evaluating RMSE, MAE of DeepRec on 3 split(s)." in text
    assert "Fold 1  Fold 2  Fold 3  Mean    Std" in text
    rmse_row = next(line for line in lines if line.startswith("RMSE (testset)"))
    values = [float(v) for v in rmse_row.split()[2:]]
    np.testing.assert_allclose(values[:3], result["test_rmse"], atol=5e-5)
    assert values[3] == pytest.approx(result["test_rmse"].mean(), abs=5e-5)
    assert values[4] == pytest.approx(result["test_rmse"].std(), abs=5e-5)
    assert any(line.startswith("Fit time") for line in lines)


def test_cross_validate_a_baseline_with_a_column_mapping(frame) -> None:
    renamed = frame.rename(columns={"user": "userId", "item": "movieId"})
    a = cross_validate(BiasOnly(), frame, cv=4, verbose=False)
    b = cross_validate(
        BiasOnly(), renamed, cv=4, columns={"user": "userId", "item": "movieId"}, verbose=False
    )
    np.testing.assert_allclose(a["test_rmse"], b["test_rmse"])
    with pytest.raises(DataError, match="measures"):
        cross_validate(BiasOnly(), frame, measures=("fcp",))
