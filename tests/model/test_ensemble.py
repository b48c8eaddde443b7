"""deeprec.ensemble: members fitted on the same data, blend weights fitted on validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deeprec.base import load_model
from deeprec.ensemble import Ensemble, expand_members, fit_blend, read_ensemble_yaml
from deeprec.errors import ConfigError, DataError
from deeprec.estimator import DeepRec

from .model_data import split_frame, synthetic_frame

SRC = Path(__file__).resolve().parents[2] / "src"
SMALL = {"hidden": [8], "epochs": 3, "batch_size": 16, "lr": 0.01, "seed": 0}
MEMBERS = [
    {**SMALL, "orientation": "item", "center": "none", "seeds": [0, 1]},
    {**SMALL, "orientation": "user", "center": "bias"},
]


@pytest.fixture(scope="module")
def data():
    return split_frame(synthetic_frame())


@pytest.fixture(scope="module")
def fitted(data) -> Ensemble:
    return Ensemble(members=MEMBERS).fit(data)


def _member_matrix(
    model: Ensemble, dataset, split: str, training_inputs: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Member predictions as the members now predict, or (`training_inputs`) from training
    ratings only, as the blend was fitted on."""
    part = dataset.split(split)
    users, items = part.users.astype(np.int64), part.items.astype(np.int64)
    cols = []
    for member in model.members_:
        saved = member.get_params()
        if training_inputs:
            member.set_params(predict_inputs="train", predict_center="train")
        cols.append(member._predict_indices(users, items))
        member.set_params(**saved)
    return np.stack(cols, axis=1), part.ratings.astype(np.float64)


def test_members_expand_presets_and_seeds() -> None:
    configs = expand_members([{"preset": "ml-100k", "seeds": [1, 2]}, {"epochs": 7}])
    assert [c.seed for c in configs] == [1, 2, 42]
    assert configs[0].orientation == "item" and configs[2].orientation == "user"
    assert configs[2].epochs == 7
    assert [c.epochs for c in expand_members([{"epochs": 7}], ["epochs=2"])] == [2]
    with pytest.raises(ConfigError, match="member 0"):
        expand_members([{"hiden": [8]}])
    with pytest.raises(ConfigError, match="blend"):
        Ensemble(blend="median").member_configs()


def test_members_never_refit() -> None:
    """The blend is fitted on validation predictions: a member trained on validation would
    leak. A preset's refit is turned off; asking for one is refused, naming the member."""
    (single,) = expand_members([{"preset": "ml-100k-single"}])
    assert not single.refit and single.global_kernel  # the rest of the preset is kept
    with pytest.raises(ConfigError, match="member 1: refit"):
        expand_members([{"epochs": 2}, {"refit": True}])
    with pytest.raises(ConfigError, match="member 0: refit"):
        expand_members([{"epochs": 2}], ["refit=true"])


def test_each_member_is_the_deeprec_it_describes(data, fitted) -> None:
    assert len(fitted.members_) == 3
    assert [m.seed for m in fitted.members_] == [0, 1, 0]
    # the blend was fitted on training-input predictions; afterwards members read training
    # and validation ratings, as a lone DeepRec does by default
    assert {m.predict_inputs for m in fitted.members_} == {"train+valid"}
    alone = DeepRec(**{**SMALL, "orientation": "user", "center": "bias"})
    alone.fit(data)
    users, items = data.test.users.astype(np.int64), data.test.items.astype(np.int64)
    np.testing.assert_array_equal(
        fitted.members_[2]._predict_indices(users, items), alone._predict_indices(users, items)
    )


def _grouped(model: Ensemble, preds: np.ndarray) -> np.ndarray:
    groups = np.asarray(model.groups_)
    return np.stack([preds[:, groups == g].mean(axis=1) for g in np.unique(groups)], axis=1)


def test_weights_are_least_squares_on_the_validation_split(data, fitted) -> None:
    assert fitted.groups_ == [0, 0, 1]  # the seeds of one member entry form a group
    preds, truth = _member_matrix(fitted, data, "valid", training_inputs=True)
    grouped = _grouped(fitted, preds)
    expected, *_ = np.linalg.lstsq(np.c_[grouped, np.ones(len(truth))], truth, rcond=None)
    np.testing.assert_allclose(fitted.group_weights_, expected[:-1], atol=1e-10)
    assert fitted.intercept_ == pytest.approx(expected[-1], abs=1e-10)
    w = fitted.group_weights_
    np.testing.assert_allclose(fitted.weights_, [w[0] / 2, w[0] / 2, w[1]], atol=1e-12)
    # not the test split's weights
    t_preds, t_truth = _member_matrix(fitted, data, "test", training_inputs=True)
    on_test, *_ = np.linalg.lstsq(
        np.c_[_grouped(fitted, t_preds), np.ones(len(t_truth))], t_truth, rcond=None
    )
    assert not np.allclose(on_test[:-1], fitted.group_weights_, atol=1e-3)
    # a least-squares fit is at least as good on validation as each group alone
    rmse = lambda p: float(np.sqrt(np.mean((np.clip(p, 1, 5) - truth) ** 2)))  # noqa: E731
    blended = grouped @ fitted.group_weights_ + fitted.intercept_
    assert fitted.valid_rmse_ == pytest.approx(rmse(blended))
    assert fitted.valid_rmse_ <= min(rmse(grouped[:, g]) for g in range(2)) + 1e-3


def test_prediction_uses_every_member(data, fitted) -> None:
    preds, _ = _member_matrix(fitted, data, "test")
    part = data.test
    users, items = part.users.astype(np.int64), part.items.astype(np.int64)
    got = fitted._predict_indices(users, items)
    np.testing.assert_allclose(got, preds @ fitted.weights_ + fitted.intercept_, atol=1e-12)
    assert np.all(np.abs(fitted.weights_) > 1e-3)
    for k in range(len(fitted.members_)):  # dropping any one member changes the blend
        without = np.delete(preds, k, axis=1) @ np.delete(fitted.weights_, k) + fitted.intercept_
        assert np.max(np.abs(without - got)) > 1e-3, k
    scores = fitted._score_users(np.array([0, 3]))
    np.testing.assert_allclose(scores[1, items[users == 3]], got[users == 3], rtol=0, atol=1e-5)


def test_mean_blend_averages_members(data) -> None:
    model = Ensemble(members=[{**SMALL, "seeds": [0, 1]}], blend="mean").fit(data)
    preds, _ = _member_matrix(model, data, "test")
    users, items = data.test.users.astype(np.int64), data.test.items.astype(np.int64)
    np.testing.assert_allclose(model._predict_indices(users, items), preds.mean(axis=1))
    np.testing.assert_allclose(fit_blend(preds, np.zeros(len(preds)), "mean")[0], [0.5, 0.5])


def test_lsq_blend_needs_a_validation_split(frame=None) -> None:
    frame = synthetic_frame()
    with pytest.raises(DataError, match="validation"):
        Ensemble(members=[SMALL]).fit(frame)


def test_save_load_round_trip_is_identical(tmp_path, data, fitted) -> None:
    fitted.save(tmp_path / "ens")
    info = json.loads((tmp_path / "ens" / "model.json").read_text())
    assert info["class"] == "Ensemble" and len(info["fitted"]["member_params"]) == 3
    loaded = load_model(tmp_path / "ens")
    assert isinstance(loaded, Ensemble)
    users, items = data.user_ids[data.test.users], data.item_ids[data.test.items]
    np.testing.assert_array_equal(
        loaded.predict(users, items, clip=False), fitted.predict(users, items, clip=False)
    )
    assert loaded.score(data) == fitted.score(data)
    np.testing.assert_array_equal(loaded.weights_, fitted.weights_)


def test_cli_trains_an_ensemble_config(tmp_path) -> None:
    data = split_frame(synthetic_frame()).save(tmp_path / "data")
    config = tmp_path / "ens.yaml"
    config.write_text(
        "ensemble:\n  blend: lsq\n  members:\n"
        "    - {hidden: [8], orientation: item, center: none, seeds: [0, 1]}\n"
        "    - {hidden: [8], batch_size: 16}\n"
    )
    assert len(read_ensemble_yaml(config)["members"]) == 2
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}"
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--config", str(config), "--set", "epochs=2"]
    proc = subprocess.run(
        [sys.executable, "-m", "deeprec", *args, "--out", str(run), "--quiet"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["members"] == 3 and len(summary["weights"]) == 3
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["member"], r["epoch"]) for r in metrics] == [
        (k, e) for k in range(3) for e in (1, 2)
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "deeprec", "evaluate", "--run", str(run)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rmse"] == pytest.approx(summary["test"]["rmse"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("ensemble:\n  members: [{hidden: [8], actvation: relu}]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "deeprec", *args[:3], "--config", str(bad), "--out",
         str(tmp_path / "r2")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0 and "actvation" in proc.stderr


def test_an_ensemble_run_cannot_be_resumed(tmp_path) -> None:
    from deeprec.runs.training import resume_run

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("ensemble:\n  members: [{}]\n")
    with pytest.raises(ConfigError, match="cannot be resumed"):
        resume_run(tmp_path / "run")


def test_recommend_ranks_by_the_blend(data, fitted) -> None:
    user = data.user_ids[0]
    top = fitted.recommend(user, k=3)
    scores = fitted._score_users(np.array([0]))[0]
    rated = set(fitted.train_.indices[fitted.train_.indptr[0] : fitted.train_.indptr[1]])
    best = [i for i in np.argsort(-scores, kind="stable") if i not in rated][:3]
    assert list(top["item"]) == list(fitted.item_ids_[best])
