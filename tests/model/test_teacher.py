"""Distillation (TrainConfig teacher / teacher_weight, deeprec.teacher): an ensemble's models
are fitted on the student's split, their mean over every cell becomes a second target at
the cells without a training rating, the refit refits them too, and only the student is
kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deeprec.errors import ConfigError
from deeprec.estimator import DeepRec, _teacher_member
from deeprec.teacher import Teacher, teacher_configs
from deeprec.train.config import TrainConfig

from .model_data import split_frame, synthetic_frame
from .test_cli import _run

BASE = dict(
    hidden=[16],
    epochs=25,
    lr=0.01,
    dropout=0.0,
    weight_decay=0.001,
    threads=1,
    seed=0,
    early_stopping=5,
    compute="reference",
)
TEACHER_YAML = """\
ensemble:
  members:
    - {hidden: [8], epochs: 10, lr: 0.01, threads: 1, seeds: [1, 2]}
    - {hidden: [8], orientation: item, epochs: 10, lr: 0.01, threads: 1}
"""


@pytest.fixture(scope="module")
def small():
    return split_frame(synthetic_frame(n_users=120, n_items=50, seed=7))


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.yaml"
    path.write_text(TEACHER_YAML)
    return str(path)


@pytest.fixture(scope="module")
def teacher(small, teacher_path) -> Teacher:
    return Teacher(teacher_path, _teacher_member).fit(small)


def unrated_distance(model: DeepRec, small, targets: np.ndarray) -> float:
    """Mean squared distance of the model's predictions to `targets` over the cells with no
    training rating."""
    users = np.arange(small.n_users)
    scores = model._score_users(users)
    rated = np.zeros_like(scores, dtype=bool)
    rated[small.train.users, small.train.items] = True
    return float(np.mean((scores[~rated] - targets[~rated]) ** 2))


def test_the_teacher_is_every_model_of_the_ensemble_predicting_from_training_inputs(
    small, teacher
) -> None:
    assert len(teacher.members) == 3  # two seeds of the first member, one of the second
    assert [m.config_.seed for m in teacher.members] == [1, 2, 42]
    assert all(m.predict_inputs == "train" for m in teacher.members)
    mean = teacher.predictions()
    assert mean.shape == (small.n_users, small.n_items)
    by_hand = np.mean([m._score_users(np.arange(small.n_users)) for m in teacher.members], 0)
    low, high = small.rating_range
    np.testing.assert_allclose(mean, np.clip(by_hand, low, high), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "settings",
    [
        {"orientation": "item", "center": "none", "standardize": False},
        {"orientation": "user", "center": "bias", "standardize": True},
    ],
)
def test_distillation_pulls_the_unrated_predictions_toward_the_teacher(
    small, teacher, teacher_path, settings
) -> None:
    targets = teacher.predictions()
    plain = DeepRec(**BASE, **settings).fit(small)
    student = DeepRec(**BASE, **settings, teacher=teacher_path, teacher_weight=20.0).fit(small)
    assert unrated_distance(student, small, targets) < 0.8 * unrated_distance(plain, small, targets)
    assert student.teacher_["models"] == 3
    assert student.teacher_["refitted"] is False


def test_weight_zero_trains_exactly_the_model_without_a_teacher(small, teacher_path) -> None:
    plain = DeepRec(**BASE, orientation="item", center="none").fit(small)
    zero = DeepRec(**BASE, orientation="item", center="none", teacher=teacher_path)
    zero.set_params(teacher_weight=0.0).fit(small)
    for name, value in plain.module_.state_dict().items():
        torch.testing.assert_close(zero.module_.state_dict()[name], value, rtol=0, atol=0)


def test_the_refit_refits_the_teacher_and_keeps_only_the_student(
    small, teacher_path, tmp_path
) -> None:
    chosen = DeepRec(**BASE, orientation="item", teacher=teacher_path).fit(small)
    refitted = DeepRec(**BASE, orientation="item", teacher=teacher_path, refit=True).fit(small)
    assert refitted.refit_["epochs"] == [chosen.best_epoch_]
    assert refitted.best_valid_rmse_ == chosen.best_valid_rmse_
    assert refitted.teacher_["refitted"] is True
    assert not hasattr(refitted, "_teacher")
    refitted.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["fitted"]["teacher"]["models"] == 3
    loaded = DeepRec.load(tmp_path / "model")
    assert loaded.teacher_ == refitted.teacher_
    users, items = small.test.users[:20], small.test.items[:20]
    np.testing.assert_allclose(
        loaded._predict_indices(users, items), refitted._predict_indices(users, items)
    )


def test_the_packaged_ensemble_preset_is_a_teacher() -> None:
    assert len(teacher_configs("ml-100k-ensemble")) == 9


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"teacher": "ml-100k-ensemble", "compute": "fast"}, "compute: reference"),
        (
            {
                "teacher": "ml-100k-ensemble",
                "compute": "reference",
                "optimizer": "lbfgs",
                "dropout": 0.0,
            },
            "first-order optimizer",
        ),
        ({"teacher_weight": -1.0}, "teacher_weight"),
        ({"teacher": 3}, "teacher"),
    ],
)
def test_bad_teacher_settings_are_config_errors(values, match) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**values)


def test_a_teacher_must_be_an_ensemble(tmp_path) -> None:
    with pytest.raises(ConfigError, match="neither an ensemble"):
        teacher_configs("ml-100k")
    with pytest.raises(ConfigError, match="unknown preset"):
        teacher_configs("no-such-preset")
    nested = tmp_path / "nested.yaml"
    nested.write_text("ensemble:\n  members:\n    - {compute: reference, teacher: x}\n")
    with pytest.raises(ConfigError, match="has a teacher itself"):
        teacher_configs(str(nested))


def test_a_teacher_needs_a_pinned_student(small, teacher_path) -> None:
    with pytest.raises(ConfigError, match="pinned model"):
        DeepRec(teacher=teacher_path).fit(small)


def test_deeprec_train_distils_from_a_config_and_records_the_teacher(
    small, teacher_path, tmp_path
) -> None:
    data = small.save(tmp_path / "data")
    config = tmp_path / "student.yaml"
    config.write_text(
        "hidden: [16]\norientation: item\ncompute: reference\nlr: 0.01\nepochs: 5\n"
        f"teacher: {teacher_path}\nteacher_weight: 5.0\nrefit: true\n"
    )
    proc = _run(
        "train", "--data", str(data), "--config", str(config), "--out", str(tmp_path / "run"),
        "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["teacher"]["models"] == 3 and summary["teacher"]["refitted"] is True
    assert summary["refit"]["epochs"] == summary["phase_best_epochs"]
    assert "teacher: " in (tmp_path / "run" / "config.yaml").read_text()


def test_the_global_kernel_fine_tuning_distils_too(small, teacher, teacher_path) -> None:
    settings = dict(
        BASE, orientation="item", center="none", standardize=False, global_kernel=3,
        finetune_epochs=8, finetune_lr=0.001,
    )  # fmt: skip
    plain = DeepRec(**settings).fit(small)
    student = DeepRec(**settings, teacher=teacher_path, teacher_weight=20.0).fit(small)
    targets = teacher.predictions()
    assert len(student.phase_best_epochs_) == 2
    assert unrated_distance(student, small, targets) < 0.8 * unrated_distance(plain, small, targets)
