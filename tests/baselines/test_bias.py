"""BiasOnly against hand computations and a plain-loop reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deeprec.baselines import BiasOnly

from .baseline_synthetic import single_torch_thread, tiny_frame  # noqa: F401


@pytest.fixture(scope="module")
def tiny_ratings() -> pd.DataFrame:
    return tiny_frame()


def test_one_sweep_by_hand():
    # mu = 3; items first: b_i = (r - mu) / (1 + 1) = +0.5, -0.5; then
    # b_u = ((4 - 3 - 0.5) + (2 - 3 + 0.5)) / (1 + 2) = 0.
    train = pd.DataFrame({"user": [7, 7], "item": [1, 2], "rating": [4.0, 2.0]})
    model = BiasOnly(reg_user=1.0, reg_item=1.0, n_iter=1).fit(train)
    assert model.global_mean_ == pytest.approx(3.0)
    np.testing.assert_allclose(model.item_bias_, [0.5, -0.5])
    np.testing.assert_allclose(model.user_bias_, [0.0])
    np.testing.assert_allclose(model.predict([7, 7], [1, 2]), [3.5, 2.5])


def _reference(users, items, ratings, mu, n_users, n_items, reg_u, reg_i, n_iter):
    b_u, b_i = [0.0] * n_users, [0.0] * n_items
    for _ in range(n_iter):
        num, den = [0.0] * n_items, [reg_i] * n_items
        for u, i, r in zip(users, items, ratings, strict=True):
            num[i] += r - mu - b_u[u]
            den[i] += 1
        b_i = [n / d for n, d in zip(num, den, strict=True)]
        num, den = [0.0] * n_users, [reg_u] * n_users
        for u, i, r in zip(users, items, ratings, strict=True):
            num[u] += r - mu - b_i[i]
            den[u] += 1
        b_u = [n / d for n, d in zip(num, den, strict=True)]
    return np.array(b_u), np.array(b_i)


def test_matches_loop_reference(tiny_ratings):
    model = BiasOnly(reg_user=3.0, reg_item=5.0, n_iter=4).fit(tiny_ratings)
    train = model.train_
    users = np.repeat(np.arange(train.shape[0]), train.row_lengths())
    mu = model.global_mean_
    assert mu == pytest.approx(float(np.mean(tiny_ratings["rating"])), rel=1e-6)
    b_u, b_i = _reference(
        users.tolist(),
        train.indices.tolist(),
        train.values.astype(np.float64).tolist(),
        mu,
        train.shape[0],
        train.shape[1],
        3.0,
        5.0,
        4,
    )
    np.testing.assert_allclose(model.user_bias_, b_u, atol=1e-12)
    np.testing.assert_allclose(model.item_bias_, b_i, atol=1e-12)


def test_fold_in_is_one_user_update(tiny_ratings):
    model = BiasOnly(reg_user=2.0, reg_item=2.0).fit(tiny_ratings)
    items, ratings = np.array([0, 3, 5]), np.array([4.0, 0.0, 1.0])
    expected_bu = (ratings - model.global_mean_ - model.item_bias_[items]).sum() / (2.0 + 3)
    np.testing.assert_allclose(
        model._fold_in(items, ratings), model.global_mean_ + expected_bu + model.item_bias_
    )
