"""Distillation's teacher: the models of an ensemble, trained on the student's split, whose
equal-weight mean predicts every (user, item) cell.

Why: the ml-100k-ensemble's nine models together are more accurate than any one of them,
but a deployed model should be one network. Pulling one autoencoder's outputs at the cells
without a training rating toward their mean (TrainConfig `teacher`, `teacher_weight`)
carries most of that difference into a single model (docs/results/single_model.md, round 5).

Honesty of the student's validation score: the members are fitted with validation only for
early stopping, predict from training inputs only, and their mean has no weight fitted on
validation (an ensemble's least-squares blend would be). With the student's refit, every
member is refitted on train + validation first (DeepRec's own refit), so the final targets
have seen every training rating. Only the student is kept; the teacher is dropped after fit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deeprec.data.dataset import PreparedDataset
from deeprec.ensemble_config import expand_members, load_ensemble_preset, read_ensemble_yaml
from deeprec.errors import ConfigError, DataError
from deeprec.presets import is_ensemble_preset
from deeprec.train.config import TrainConfig

# the dense users x items mean is held in memory (as the global kernel's matrix is)
MAX_TEACHER_CELLS = 200_000_000


def teacher_configs(spec: str) -> list[TrainConfig]:
    """One TrainConfig per teacher model: the members of an ensemble preset (by name) or of
    an ensemble YAML file (by path), each seed its own model."""
    path = Path(spec)
    if path.is_file():
        kwargs = read_ensemble_yaml(path)
    else:
        name = path.name.removesuffix(".yaml").removesuffix(".yml")
        if path.parent != Path(".") or not is_ensemble_preset(name):  # unknown: lists presets
            raise ConfigError(
                f"teacher {spec!r} is neither an ensemble YAML file nor an ensemble preset"
            )
        kwargs = load_ensemble_preset(name)
    configs = expand_members(kwargs["members"])
    for k, config in enumerate(configs):
        if config.teacher:
            raise ConfigError(f"teacher {spec}: model {k} has a teacher itself")
    return configs


class Teacher:
    """The teacher's fitted models and their mean prediction over every cell.

    `new_model(config)` builds one unfitted model that predicts from training inputs
    (DeepRec passes its own constructor; this module does not import the estimator)."""

    def __init__(
        self, spec: str, new_model: Callable[[TrainConfig], Any], *, echo: Any = None
    ) -> None:
        self.spec = spec
        self.configs = teacher_configs(spec)
        self.new_model = new_model
        self.echo = echo
        self.members: list[Any] = []
        self.refitted = False

    def fit(self, dataset: PreparedDataset) -> Teacher:
        """Fit every model on `dataset` (early stopping on its validation split)."""
        cells = dataset.n_users * dataset.n_items
        if cells > MAX_TEACHER_CELLS:
            raise DataError(
                f"teacher: the dense {dataset.n_users} x {dataset.n_items} prediction matrix "
                f"({cells:,} cells) is over the limit of {MAX_TEACHER_CELLS:,}"
            )
        self.members = []
        for k, config in enumerate(self.configs):
            member = self.new_model(config)
            member.fit(dataset)
            self.members.append(member)
            if self.echo is not None:
                valid = member.best_valid_rmse_
                shown = "n/a" if valid is None else f"{valid:.4f}"
                self.echo(f"teacher model {k + 1}/{len(self.configs)}: valid RMSE {shown}")
        self.rating_range = dataset.rating_range
        return self

    def refit(self, dataset: PreparedDataset) -> None:
        """Refit every model on train + validation for the epochs its validation chose; they
        then predict from every training rating."""
        for member in self.members:
            member._refit(dataset)
            member.set_params(predict_inputs="train+valid", predict_center="train+valid")
        self.refitted = True

    def predictions(self) -> np.ndarray:
        """The members' equal-weight mean over every (user, item) cell (users x items,
        float32), clipped to the training ratings' range."""
        if not self.members:
            raise RuntimeError("Teacher.predictions() before fit()")
        users = np.arange(self.members[0].n_users)
        total = np.zeros((users.shape[0], self.members[0].n_items), dtype=np.float64)
        for member in self.members:
            total += member._score_users(users)
        low, high = self.rating_range
        return np.clip(total / len(self.members), low, high).astype(np.float32)

    def summary(self) -> dict[str, Any]:
        """What the fit's record keeps of the teacher (its models are not kept)."""
        return {
            "spec": self.spec,
            "models": len(self.members),
            "refitted": self.refitted,
            "valid_rmse": [m.best_valid_rmse_ for m in self.members],
        }
