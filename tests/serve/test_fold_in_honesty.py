"""Fold-in honesty: users hidden from training, folded in from part of their ratings."""

from __future__ import annotations

import numpy as np
import pytest

from deeprec import DeepRec
from deeprec.recommend.honesty import fold_in_honesty, low_rank_ratings
from shared_data import shared_file


def test_folded_in_users_beat_bias_only_and_match_seen_users():
    # Low-rank ratings with little bias: most of the signal is in the user's taste, which
    # only a model that reads the user's ratings can use.
    ratings = low_rank_ratings(
        2500, 80, rank=2, bias_scale=0.1, factor_scale=2.0, noise=0.2, density=0.3, seed=0
    )
    report = fold_in_honesty(
        lambda: DeepRec(
            hidden=[16], epochs=15, dropout=0.0, input_dropout=0.5, lr=0.003, batch_size=32
        ),
        ratings,
        hidden_frac=0.1,
        test_frac=0.2,
        seed=0,
    )
    assert report["n_users_hidden"] == 250 and report["n_hidden_test"] > 1000
    # far better than the bias-only baseline given the same ratings ...
    assert report["rmse_hidden_foldin"] < 0.85 * report["rmse_hidden_bias"], report
    # ... and close to users seen in training
    assert report["rmse_hidden_foldin"] < report["rmse_seen_model"] + 0.05, report


def test_bias_baseline_by_hand():
    import pandas as pd

    from deeprec.recommend.honesty import bias_predictions

    train = pd.DataFrame({"user": [1, 1, 2], "item": [10, 20, 10], "rating": [5.0, 3.0, 4.0]})
    known = pd.DataFrame({"user": [9], "item": [20], "rating": [2.0]})
    test = pd.DataFrame({"user": [9, 1], "item": [10, 30], "rating": [0.0, 0.0]}, index=[7, 3])
    mu = 4.0
    b10, b20 = (1.0 + 0.0) / 2, -1.0 / 1  # reg=0: plain means of residuals
    b9 = 2.0 - mu - b20
    b1 = ((5 - mu - b10) + (3 - mu - b20)) / 2
    got = bias_predictions(train, known, test, reg=0.0)
    # user 1 is not in `known`, item 30 is unknown: both biases fall back to 0
    np.testing.assert_allclose(got, [mu + b10 + b9, mu])
    assert b1 == 0.25  # (user 1's bias only applies when `known` holds their ratings)


@pytest.mark.realdata
@pytest.mark.slow
def test_fold_in_on_movielens_100k():
    """Real data: folded-in users must get real information from their ratings.

    On ML-100K this user-based autoencoder does not beat the bias-only baseline even for
    users it trained on (see docs/results/fold_in.md), so the bar here is the global mean.
    """
    import pandas as pd

    path = shared_file("ml-100k", "u.data")
    frame = pd.read_csv(path, sep="\t", names=["user", "item", "rating", "timestamp"])
    report = fold_in_honesty(
        lambda: DeepRec(
            hidden=[256, 256], dropout=0.5, input_dropout=0.3, epochs=40, lr=0.001, batch_size=64
        ),
        frame,
        seed=0,
    )
    assert report["n_users_hidden"] == 94
    assert report["rmse_hidden_foldin"] < report["rmse_hidden_global_mean"] - 0.02, report
    assert report["rmse_hidden_foldin"] < report["rmse_seen_model"] + 0.15, report
