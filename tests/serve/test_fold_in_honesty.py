"""Fold-in honesty: users hidden from training, folded in from part of their ratings."""

from __future__ import annotations

from deeprec import DeepRec
from deeprec.recommend.honesty import fold_in_honesty, low_rank_ratings


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
