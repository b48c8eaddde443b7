"""BiasedMF recovers a known low-rank + bias model and folds in by ridge regression."""

from __future__ import annotations

import numpy as np

from deeprec.baselines import BiasedMF, BiasOnly

from .baseline_synthetic import low_rank_ratings, single_torch_thread  # noqa: F401


def test_recovers_low_rank_model_near_noise_level():
    noise = 0.3
    train, test = low_rank_ratings(n_users=300, n_items=200, rank=3, density=0.3, noise=noise)
    valid = train.sample(frac=0.1, random_state=0)
    train = train.drop(valid.index)
    mf = BiasedMF(n_factors=3, lr=0.01, reg=0.02, epochs=200, batch_size=64, patience=10)
    mf.fit(train, valid)
    rmse = mf.score(test)["rmse_unclipped"]
    bias_rmse = BiasOnly().fit(train).score(test)["rmse_unclipped"]
    # The noise floor is 0.3; bias-only cannot model the rank-3 interaction (about 0.67 here).
    assert rmse < noise * 1.15, rmse
    assert bias_rmse > 2 * noise


def test_fold_in_without_reg_is_least_squares():
    train, _ = low_rank_ratings(seed=1)
    mf = BiasedMF(n_factors=3, reg=0.0, reg_bias=0.0, epochs=5).fit(train)
    items = np.arange(0, 40, 2)
    ratings = np.linspace(0.5, 4.5, items.shape[0])
    out = mf._fold_in(items, ratings)
    design = np.hstack([mf.item_factors_[items].astype(np.float64), np.ones((20, 1))])
    target = ratings - mf.global_mean_ - mf.item_bias_[items]
    coef = np.linalg.lstsq(design, target, rcond=None)[0]
    expected = mf.global_mean_ + coef[-1] + mf.item_bias_ + mf.item_factors_ @ coef[:-1]
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_early_stopping_keeps_best_validation_epoch():
    train, _ = low_rank_ratings(seed=2, density=0.15)
    valid = train.sample(frac=0.2, random_state=0)
    train = train.drop(valid.index)
    # Many factors, no regularisation: over-fits, so the best epoch comes early.
    mf = BiasedMF(n_factors=50, reg=0.0, lr=0.05, epochs=40, patience=3).fit(train, valid)
    curve = [h["valid_rmse"] for h in mf.history_]
    assert mf.best_epoch_ == int(np.argmin(curve)) + 1
    assert len(curve) < 40
    assert mf.score(valid)["rmse"] == min(curve)
