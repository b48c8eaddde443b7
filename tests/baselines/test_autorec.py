"""AutoRec specifics: orientation symmetry, explicit masks, fold-in, optimizers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deeprec.baselines import AutoRec

from .baseline_synthetic import low_rank_ratings, single_torch_thread, tiny_frame  # noqa: F401


@pytest.fixture(scope="module")
def tiny_ratings() -> pd.DataFrame:
    return tiny_frame()


def test_item_based_equals_user_based_on_transposed_matrix(tiny_ratings):
    swapped = tiny_ratings.rename(columns={"user": "item", "item": "user"})
    kw = {"hidden": 8, "epochs": 10, "l2": 1.0, "seed": 5}
    item_model = AutoRec(orientation="item", **kw).fit(tiny_ratings)
    user_model = AutoRec(orientation="user", **kw).fit(swapped)
    users, items = tiny_ratings["user"].to_numpy(), tiny_ratings["item"].to_numpy()
    np.testing.assert_array_equal(
        item_model.predict(users, items, clip=False),
        user_model.predict(items, users, clip=False),
    )


def test_zero_rating_is_an_input_not_a_gap():
    """On a 0..4 scale the input shifts observed ratings to >= 1, so 0 differs from missing."""
    frame = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 2], "rating": [0.0, 4.0, 2.0]})
    model = AutoRec(hidden=2, epochs=1, orientation="user").fit(frame)
    x = model._dense_rows(np.array([0, 1])).numpy()
    np.testing.assert_array_equal(x, [[1.0, 5.0], [0.0, 3.0]])
    centred = AutoRec(hidden=2, epochs=1, orientation="user", input_offset="mean").fit(frame)
    x = centred._dense_rows(np.array([0])).numpy()
    np.testing.assert_allclose(x, [[-2.0, 2.0]])


def test_user_fold_in_equals_scoring_a_training_user(tiny_ratings):
    model = AutoRec(hidden=8, epochs=10, orientation="user").fit(tiny_ratings)
    row = model.train_
    u = 4
    items = row.indices[row.indptr[u] : row.indptr[u + 1]]
    ratings = row.values[row.indptr[u] : row.indptr[u + 1]]
    np.testing.assert_allclose(
        model._fold_in(items, ratings), model._score_users(np.array([u]))[0], rtol=1e-6
    )


@pytest.mark.parametrize(
    "optimizer,lr,epochs", [("adam", 0.05, 150), ("lbfgs", 1.0, 15), ("rprop", 0.01, 40)]
)
def test_learns_low_rank_data(optimizer, lr, epochs):
    train, test = low_rank_ratings(n_users=100, n_items=60, density=0.4, seed=3)
    valid = train.sample(frac=0.1, random_state=0)
    train = train.drop(valid.index)
    model = AutoRec(hidden=20, l2=1.0, optimizer=optimizer, lr=lr, epochs=epochs, patience=None)
    model.fit(train, valid)
    mean_rmse = float(np.sqrt(np.mean((test["rating"] - train["rating"].mean()) ** 2)))
    rmse = model.score(test)["rmse"]
    assert rmse < 0.93 * mean_rmse, (rmse, mean_rmse)
    curve = [h["valid_rmse"] for h in model.history_]
    assert model.best_epoch_ == int(np.argmin(curve)) + 1
