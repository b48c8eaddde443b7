"""Each baseline learns on MovieLens-100K u1 (validation carved from u1.base, never test).

Margin: every model's clipped test RMSE must be at least MARGIN below the global-mean
predictor's on u1.test (the global mean scores about 1.154 there; bias-only about 0.96).
Short runs keep the test fast; the tuned numbers are in docs/results/baselines.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from deeprec.base import load_model
from deeprec.baselines import AutoRec, BiasedMF, BiasOnly
from deeprec.experiments.protocols import movielens_100k_folds
from shared_data import shared_file

from .baseline_synthetic import single_torch_thread  # noqa: F401

MARGIN = 0.15

MODELS = {
    "bias": lambda: BiasOnly(),
    "mf": lambda: BiasedMF(n_factors=50, lr=0.01, reg=0.05, epochs=25, seed=0),
    "i-autorec": lambda: AutoRec(hidden=500, l2=100.0, lr=0.01, epochs=60, seed=0),
    "u-autorec": lambda: AutoRec(
        hidden=500, orientation="user", l2=100.0, lr=0.01, epochs=60, seed=0
    ),
}


@pytest.fixture(scope="module")
def u1():
    folder = shared_file("ml-100k", "u1.base").parent
    return next(movielens_100k_folds(folder, folds=[1], valid_fraction=0.05, seed=0))


@pytest.mark.realdata
@pytest.mark.parametrize("name", list(MODELS))
def test_beats_global_mean_on_u1(name, u1, tmp_path):
    model = MODELS[name]().fit(u1.train, u1.valid)
    truth = u1.test["rating"].to_numpy(np.float64)
    global_rmse = float(np.sqrt(np.mean((truth - model.global_mean_) ** 2)))
    result = model.score(u1.test)
    assert result["n"] == 20_000
    assert result["rmse"] < global_rmse - MARGIN, (result["rmse"], global_rmse)
    model.save(tmp_path / name)
    users, items = u1.test["user"].to_numpy(), u1.test["item"].to_numpy()
    np.testing.assert_array_equal(
        load_model(tmp_path / name).predict(users, items), model.predict(users, items)
    )
