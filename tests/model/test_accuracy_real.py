"""Accuracy on real data that can fail (skipped when ../shared/data is absent).

- ML-100K u1.base/u1.test (validation: a seeded 5% of u1.base): a short CPU run of the
  item-based ml-100k preset, with mini-batches so that 25 epochs suffice (the full preset
  trains full-batch for ~130 epochs), reaches test RMSE < 0.95.
- The data-driven defaults (`DeepRec()`, deeprec.selection) on FilmTrust, ml-latest-small
  and the ML-1M subset's dense cut beat the best of Surprise's four default models there,
  within a small margin of their measured RMSE (docs/results/generalization.md).
- The ml-100k preset, full length, on u1 with a 10% validation carve-out; so are the
  ml-100k-single preset (refit on all of u1.base) and the ml-100k-distilled preset (without
  its refits, to keep CI short).
- ML-1M users 1-2999, time split (latest 10% by time, 50/50 valid/test): below the
  bias-only baseline (mu + b_u + b_i, regularised, as Surprise's BaselineOnly) computed here,
  after 90 full-batch epochs of the item-based ml-1m preset with the stronger L2 of the
  ml-100k preset (which converges faster: validation 0.900 at epoch 85 in the tuning runs).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from deeprec.data.prepare import prepare_dataset
from deeprec.estimator import DeepRec
from deeprec.presets import load_preset

from .model_data import shared_file

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def bias_only_rmse(dataset, reg_user: float = 15.0, reg_item: float = 10.0) -> float:
    """Alternating least squares for mu + b_u + b_i (Surprise BaselineOnly's defaults)."""
    tr, te = dataset.train, dataset.test
    r = tr.ratings.astype(np.float64)
    mu = r.mean()
    n_u, n_i = dataset.n_users, dataset.n_items
    cnt_u = np.bincount(tr.users, minlength=n_u)
    cnt_i = np.bincount(tr.items, minlength=n_i)
    b_u, b_i = np.zeros(n_u), np.zeros(n_i)
    for _ in range(10):
        b_i = np.bincount(tr.items, r - mu - b_u[tr.users], n_i) / (reg_item + cnt_i)
        b_u = np.bincount(tr.users, r - mu - b_i[tr.items], n_u) / (reg_user + cnt_u)
    low, high = dataset.rating_range
    pred = np.clip(mu + b_u[te.users] + b_i[te.items], low, high)
    return float(np.sqrt(np.mean((pred - te.ratings) ** 2)))


@pytest.fixture(autouse=True)
def _at_most_two_threads() -> Iterator[None]:
    """At most 2 threads for these runs (their RMSE bounds were measured so), and the
    caller's thread count back afterwards: later tests must not inherit it."""
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)


def _fit(dataset, preset: str, **overrides) -> DeepRec:
    config = load_preset(preset)
    params = {**config.to_dict(), **overrides}
    return DeepRec(**params).fit(dataset)


def test_ml100k_u1_short_run_below_095() -> None:
    base = shared_file("ml-100k", "u1.base")
    test = shared_file("ml-100k", "u1.test")
    dataset = prepare_dataset([base, test], "movielens", "given", seed=0, valid_fraction=0.05)
    model = _fit(dataset, "ml-100k", epochs=25, batch_size=256, lr=0.003, weight_decay=0.003)
    result = model.score(dataset, "test")
    assert result["n"] == 19_968  # u1.test less its 32 ratings of items absent from u1.base
    assert result["rmse"] < 0.95, result
    assert bias_only_rmse(dataset) > result["rmse"]


def test_ml1m_subset_time_split_beats_bias_only() -> None:
    path = shared_file("ml-1m-users1-2999", "ratings.dat.gz")
    dataset = prepare_dataset([path], "movielens", "time-quantile:0.9", seed=0)
    baseline = bias_only_rmse(dataset)
    assert 0.85 < baseline < 1.0  # sanity: the baseline itself is sensible
    model = _fit(dataset, "ml-1m", epochs=90, weight_decay=0.001)
    result = model.score(dataset, "test")
    assert result["rmse"] < baseline, (result, baseline)


def test_ml100k_u1_ensemble_beats_each_member() -> None:
    """deeprec.ensemble on real data: 2 seeds of the item-based preset + the centred
    user-based defaults, weights fitted on validation, is better on u1.test than every member
    (model-tuning.md round 2 measured 0.8952 for the 7-member preset vs 0.8985-0.9269).
    Members read training + validation ratings as inputs after the blend is fitted, as the
    blend does: measured 0.8957 vs members 0.8994-0.9258 (2-core AMD EPYC, 2 threads)."""
    from deeprec.ensemble import Ensemble

    base = shared_file("ml-100k", "u1.base")
    test = shared_file("ml-100k", "u1.test")
    dataset = prepare_dataset([base, test], "movielens", "given", seed=0, valid_fraction=0.05)
    model = Ensemble(members=[{"preset": "ml-100k", "seeds": [1, 2]}, {}]).fit(dataset)
    blended = model.score(dataset, "test")["rmse"]
    part = dataset.test
    truth = part.ratings.astype(np.float64)
    for member in model.members_:
        pred = np.clip(member._predict_indices(part.users, part.items), 1.0, 5.0)
        assert blended < float(np.sqrt(np.mean((pred - truth) ** 2))) - 0.001
    assert blended < 0.90, blended


def _random_split(path, fmt: str, **kw):
    return prepare_dataset([path], fmt, "random:0.8,0.1,0.1", seed=0, **kw)


def test_defaults_on_filmtrust_beat_surprise() -> None:
    """generalization.md: DeepRec() (selection, then the refit on train + validation)
    0.7651 at 1 thread and with this test's 2 threads (0.7631 before the item candidates
    had input dropout and a second phase); the best Surprise default model, SVD on train +
    validation, 0.7810."""
    path = shared_file("filmtrust", "ratings.txt")
    with pytest.warns(Warning, match="duplicate"):
        dataset = _random_split(path, "csv", columns="user=0,item=1,rating=2")
    model = DeepRec(threads=2).fit(dataset)
    assert model.refit_ is not None
    assert model.score(dataset, "test")["rmse"] < 0.769


def test_defaults_on_ml_latest_small_beat_surprise() -> None:
    """ml-latest-small (half stars), random 80/10/10: DeepRec() 0.8240 with this test's 2
    threads and at 1 thread (model seeds 1, 2: 0.8244, 0.8275), an item-based winner with
    input dropout and a second phase; 0.8455 before the item candidates had them; best
    Surprise, SVD++ on train + validation, 0.8545 (generalization.md)."""
    dataset = _random_split(shared_file("ml-latest-small", "ratings.csv"), "csv")
    model = DeepRec(threads=2).fit(dataset)
    assert model.selection_["winner"].startswith("item-wide")
    assert model.score(dataset, "test")["rmse"] < 0.830


def test_defaults_on_a_dense_cut_beat_surprise(tmp_path) -> None:
    """The ML-1M subset's 100 most-rated items, users with >= 50 of them (as
    benchmarks/generalization_sets.py cuts it): DeepRec() 0.7965 measured with this test's 2
    threads and at 1 thread (0.7967 before the item candidates' input dropout and second
    phase), best Surprise SVD++ 0.8160."""
    import pandas as pd

    frame = pd.read_csv(
        shared_file("ml-1m-users1-2999", "ratings.dat.gz"), sep="::", engine="python", header=None
    )
    frame.columns = ["user", "item", "rating", "timestamp"]
    part = frame[frame["item"].isin(frame["item"].value_counts().index[:100])]
    counts = part["user"].value_counts()
    part = part[part["user"].isin(counts.index[counts >= 50])]
    part[["user", "item", "rating"]].to_csv(tmp_path / "dense.csv", index=False)
    dataset = _random_split(tmp_path / "dense.csv", "csv")
    model = DeepRec(threads=2).fit(dataset)
    assert model.score(dataset, "test")["rmse"] < 0.803


def test_ml100k_preset_full_run() -> None:
    """The item-based ml-100k preset as shipped, u1 with a 10% carve-out: 0.9023 measured."""
    base = shared_file("ml-100k", "u1.base")
    test = shared_file("ml-100k", "u1.test")
    dataset = prepare_dataset([base, test], "movielens", "given", seed=0, valid_fraction=0.1)
    model = _fit(dataset, "ml-100k")
    assert model.score(dataset, "test")["rmse"] < 0.906


def test_ml100k_distilled_preset_without_its_refits() -> None:
    """The ml-100k-distilled preset (ml-100k-single distilled from the ml-100k-ensemble's
    nine models; deeprec.teacher), u1 with a 10% carve-out, with refit off to keep this
    run short (no second fit of the teacher or the student): valid 0.8856, test 0.8933
    measured at 2 threads (single_model.md round 5, 0.8878 with the refits);
    ml-100k-single without a teacher is at valid 0.8919 (seed 42), 0.8917-0.8949 over
    three seeds."""
    base = shared_file("ml-100k", "u1.base")
    test = shared_file("ml-100k", "u1.test")
    dataset = prepare_dataset([base, test], "movielens", "given", seed=0, valid_fraction=0.1)
    model = _fit(dataset, "ml-100k-distilled", refit=False)
    assert model.teacher_["models"] == 9 and model.teacher_["refitted"] is False
    assert model.best_valid_rmse_ < 0.888
    assert model.score(dataset, "test")["rmse"] < 0.896


def test_ml100k_single_preset_full_run() -> None:
    """The best single model as shipped (kernelised weights, input dropout 0.5, GLocal-K's
    global-kernel fine-tuning, then the refit on all of u1.base for the epochs validation
    chose), u1 with a 10% carve-out: valid 0.8919, test 0.8936 measured (seed 42, 1 thread;
    single_model.md rows G2 and G6), 0.9020 before the refit."""
    base = shared_file("ml-100k", "u1.base")
    test = shared_file("ml-100k", "u1.test")
    dataset = prepare_dataset([base, test], "movielens", "given", seed=0, valid_fraction=0.1)
    model = _fit(dataset, "ml-100k-single")
    assert len(model.refit_["epochs"]) == 2  # pre-training and fine-tuning epochs
    assert model.train_.nnz == dataset.train.ratings.shape[0] + dataset.valid.ratings.shape[0]
    assert model.best_valid_rmse_ < 0.895
    assert model.score(dataset, "test")["rmse"] < 0.898
