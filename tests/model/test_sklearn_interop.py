"""scikit-learn interoperability: clone, get/set_params, cross_val_score, GridSearchCV on
(X = user and item ids, y = ratings), and the `columns=` mapping on every table method."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from deeprec import DeepRec, load_model
from deeprec.baselines import BiasOnly
from deeprec.errors import DataError
from deeprec.recommend.honesty import low_rank_ratings

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone, is_regressor  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return low_rank_ratings(120, 50, density=0.3, seed=3)


def small(**kw) -> DeepRec:
    return DeepRec(hidden=[8], epochs=2, verbose=False, **kw)


def test_clone_and_params_round_trip() -> None:
    model = small(lr=0.01)
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    assert is_regressor(model)
    copy.set_params(lr=0.02, hidden=[4])
    assert copy.lr == 0.02 and model.lr == 0.01
    with pytest.raises(ValueError, match="unknown parameter"):
        copy.set_params(learning_rate=1)


def test_cross_val_score_with_x_and_y(frame) -> None:
    """Regression: this failed with "no attribute '__sklearn_tags__'"."""
    X, y = frame[["user", "item"]], frame["rating"]
    scores = cross_val_score(
        small(),
        X,
        y,
        scoring="neg_root_mean_squared_error",
        cv=KFold(3, shuffle=True, random_state=0),
        error_score="raise",
    )
    assert scores.shape == (3,) and np.all((-scores > 0.3) & (-scores < 2.0))


def test_grid_search_default_scoring_is_minus_rmse(frame) -> None:
    X, y = frame[["user", "item"]], frame["rating"].to_numpy()
    search = GridSearchCV(small(), {"lr": [1e-6, 0.02]}, cv=2, error_score="raise").fit(X, y)
    assert search.best_params_ == {"lr": 0.02}
    model = search.best_estimator_
    assert model.score(X, y) == pytest.approx(-model.score(frame)["rmse"])
    assert search.predict(X.head(3)).shape == (3,)


def test_baselines_take_part_too(frame) -> None:
    X, y = frame[["user", "item"]], frame["rating"]
    scores = cross_val_score(BiasOnly(), X, y, cv=2, error_score="raise")
    assert np.all(scores < 0)  # minus RMSE


def test_predict_takes_a_frame_of_ids_and_unseen_ids_get_the_training_mean(frame) -> None:
    model = small().fit(frame[["user", "item"]], frame["rating"])
    pairs = frame[["user", "item"]].head(5)
    np.testing.assert_array_equal(model.predict(pairs), model.predict(pairs.user, pairs.item))
    np.testing.assert_array_equal(model.predict(pairs.to_numpy()), model.predict(pairs))
    np.testing.assert_array_equal(model.predict(pl.from_pandas(pairs)), model.predict(pairs))
    unseen = pd.DataFrame({"user": [10_000, pairs.user.iloc[0]], "item": [pairs.item.iloc[0], -7]})
    assert model.predict(unseen).tolist() == [model.global_mean_] * 2
    assert np.isnan(model.predict(unseen, unknown="nan")).all()


def test_score_keeps_its_dict_form(frame) -> None:
    model = small().fit(frame)
    result = model.score(frame)
    assert {"rmse", "mae", "n", "rmse_unclipped", "n_unknown"} <= set(result)
    with pytest.raises(DataError, match="rows but y has"):
        model.score(frame[["user", "item"]], frame["rating"].to_numpy()[:-1])


MOVIELENS = {"user": "userId", "item": "movieId"}


def test_columns_map_movielens_names_everywhere(frame, tmp_path) -> None:
    ml = frame.rename(columns={"user": "userId", "item": "movieId"})
    model = small().fit(ml, columns=MOVIELENS)
    assert model.columns_ == MOVIELENS
    plain = small().fit(frame)
    pairs = ml[["userId", "movieId"]].head(6)
    np.testing.assert_allclose(
        model.predict(pairs), plain.predict(frame.user.head(6), frame.item.head(6))
    )
    assert model.score(ml)["rmse"] == pytest.approx(plain.score(frame)["rmse"])
    assert model.score(ml, columns=MOVIELENS)["n"] == len(ml)
    # canonical names still work after fitting with a mapping
    np.testing.assert_allclose(model.predict(frame[["user", "item"]].head(6)), model.predict(pairs))
    top = model.recommend(frame.user.iloc[0], k=3)
    assert list(top.columns) == ["movieId", "score", "prediction"]
    # the mapping is saved with the model
    model.save(tmp_path / "m")
    assert load_model(tmp_path / "m").columns_ == MOVIELENS
    # fit(X, y) with a mapping
    again = small().fit(ml[["userId", "movieId"]], ml["rating"], columns=MOVIELENS)
    assert again.n_users == plain.n_users
    with pytest.raises(DataError, match="lacks column"):
        small().fit(ml)  # no mapping: the error names what is missing
    with pytest.raises(DataError, match="unknown key"):
        small().fit(ml, columns={"users": "userId"})
