"""`Ensemble`: several DeepRec models fitted on the same data, blended by weights fitted on
the validation split (least squares), never on test.

Why: on ML-100K no single autoencoder configuration tried got u1 test RMSE below 0.899,
while averaging seeds of the item-based model and adding the centred user-based model (which
errs differently) lowers it (docs/results/model-tuning.md).

A member is a mapping of TrainConfig keys, optionally with ``preset: NAME`` (a packaged
preset the other keys override) and ``seeds: [..]`` (one member per seed). The YAML form,
usable with ``deeprec train --config``, is::

    ensemble:
      blend: lsq            # least squares with intercept on validation; or "mean"
                            # (one weight per member entry; its seeds share it equally)
      members:
        - {preset: ml-100k, seeds: [42, 43, 44]}
        - {orientation: user}   # TrainConfig defaults otherwise

Saved like every model (base.Recommender.save): member k's tensors are stored under
``member{k}.`` in weights.safetensors, the blend weights as ``blend.weights`` /
``blend.intercept``, each member's full config and training history in model.json.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from deeprec.base import Recommender
from deeprec.data.dataset import PreparedDataset
from deeprec.ensemble_config import (
    BLENDS,
    MEMBER_EXTRA_KEYS,
    check_blend,
    expand_members,
    is_ensemble_yaml,
    load_ensemble_preset,
    member_groups,
    read_ensemble_yaml,
)
from deeprec.errors import CheckpointError, DataError
from deeprec.estimator import DeepRec
from deeprec.train.config import TrainConfig

__all__ = [
    "BLENDS",
    "MEMBER_EXTRA_KEYS",
    "Ensemble",
    "expand_members",
    "fit_blend",
    "is_ensemble_yaml",
    "load_ensemble_preset",
    "member_groups",
    "read_ensemble_yaml",
]


def fit_blend(predictions: np.ndarray, truth: np.ndarray, blend: str) -> tuple[np.ndarray, float]:
    """Blend weights (one per column of `predictions`) and intercept.

    lsq: ordinary least squares of truth on [predictions, 1] (the validation ratings);
    mean: equal weights, no intercept."""
    n_members = predictions.shape[1]
    if blend == "mean":
        return np.full(n_members, 1.0 / n_members), 0.0
    design = np.c_[predictions, np.ones(predictions.shape[0])]
    solution, *_ = np.linalg.lstsq(design, truth, rcond=None)
    return solution[:-1].astype(np.float64), float(solution[-1])


class Ensemble(Recommender):
    """A validation-weighted blend of DeepRec models (see the module docstring)."""

    model_name: ClassVar[str] = "Ensemble"

    def __init__(
        self,
        members: list[dict[str, Any]] | tuple[dict[str, Any], ...] = ({"preset": "ml-100k"},),
        blend: str = "lsq",
        verbose: bool = False,
    ) -> None:
        self.members = members
        self.blend = blend
        self.verbose = verbose

    def member_configs(self) -> list[TrainConfig]:
        return [c for group in self.member_groups() for c in group]

    def member_groups(self) -> list[list[TrainConfig]]:
        check_blend(self.blend)
        return member_groups(copy.deepcopy(list(self.members)))

    # --------------------------------------------------------------- fit
    def fit(
        self,
        train: Any,
        valid: Any = None,
        *,
        columns: dict[str, str] | None = None,
        on_epoch_end: Callable[[int, Any, bool], None] | None = None,
    ) -> Ensemble:
        """Fit every member on `train` (early stopping / best epoch on the validation split),
        then the blend weights on the validation split.

        `on_epoch_end(member_index, record, improved)` is called after every member epoch."""
        dataset = self._input_dataset(train, valid, columns)
        self._set_index(dataset)
        self._fit_dataset(dataset, on_epoch_end=on_epoch_end)
        return self

    def _fit_dataset(self, dataset: PreparedDataset, on_epoch_end: Any = None) -> None:
        groups = self.member_groups()
        configs = [c for group in groups for c in group]
        part = dataset.valid
        if self.blend == "lsq" and part.ratings.shape[0] < len(groups) + 1:
            raise DataError(
                f"blend='lsq' fits {len(groups) + 1} numbers on the validation split, which "
                f"has {part.ratings.shape[0]} ratings; give a validation split or use "
                "blend='mean'"
            )
        self.members_: list[DeepRec] = []
        for k, config in enumerate(configs):
            # members read training inputs while the blend is fitted on validation
            # predictions, which must not see the validation ratings as inputs
            member = DeepRec.from_config(
                config, verbose=self.verbose, predict_inputs="train", predict_center="train"
            )
            hook = None
            if on_epoch_end is not None:
                hook = lambda record, improved, k=k: on_epoch_end(k, record, improved)  # noqa: E731
            member.fit(dataset, on_epoch_end=hook)
            self.members_.append(member)
        # member k belongs to group_of[k]; a group's seeds share its weight equally
        self.groups_ = [g for g, group in enumerate(groups) for _ in group]
        group_of = np.asarray(self.groups_)
        sizes = np.bincount(group_of)
        users, items = part.users.astype(np.int64), part.items.astype(np.int64)
        truth = part.ratings.astype(np.float64)
        low, high = self.rating_range_
        if truth.shape[0]:
            stacked = self._member_predictions(users, items)
            grouped = np.stack(
                [stacked[:, group_of == g].mean(axis=1) for g in range(len(groups))], axis=1
            )
            group_weights, self.intercept_ = fit_blend(grouped, truth, self.blend)
            clipped = np.clip(stacked, low, high)
            self.member_valid_rmse_: list[float | None] = [
                float(np.sqrt(np.mean((clipped[:, k] - truth) ** 2)))
                for k in range(stacked.shape[1])
            ]
        else:  # blend="mean" without validation
            group_weights, self.intercept_ = fit_blend(np.zeros((0, len(groups))), truth, "mean")
            self.member_valid_rmse_ = [None] * len(configs)
        self.group_weights_ = group_weights
        self.weights_ = group_weights[group_of] / sizes[group_of]
        if truth.shape[0]:
            blended = np.clip(self._predict_indices(users, items), low, high)
            self.valid_rmse_: float | None = float(np.sqrt(np.mean((blended - truth) ** 2)))
        else:
            self.valid_rmse_ = None
        # the blend is fitted; from here on members predict as a DeepRec does, from the
        # training and validation ratings (their `predict_inputs` default)
        for member in self.members_:
            member.set_params(predict_inputs="train+valid", predict_center="train+valid")

    # ----------------------------------------------------------- predict
    def _member_predictions(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.stack([m._predict_indices(users, items) for m in self.members_], axis=1)

    def _predict_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self._member_predictions(users, items) @ self.weights_ + self.intercept_

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        out = np.full((len(users), self.n_items), self.intercept_, dtype=np.float64)
        for weight, member in zip(self.weights_, self.members_, strict=True):
            out += weight * member._score_users(users)
        return out

    def _fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """Every member must be user-based (item-based members raise DataError)."""
        out = np.full(self.n_items, self.intercept_, dtype=np.float64)
        for weight, member in zip(self.weights_, self.members_, strict=True):
            out += weight * member._fold_in(items, ratings)
        return out

    def _fold_in_item(self, users: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        out = np.full(self.n_users, self.intercept_, dtype=np.float64)
        for weight, member in zip(self.weights_, self.members_, strict=True):
            out += weight * member._fold_in_item(users, ratings)
        return out

    # ---------------------------------------------------------- save/load
    def _state_dict(self) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = {
            "blend.weights": torch.from_numpy(np.asarray(self.weights_, np.float64)),
            "blend.intercept": torch.tensor([self.intercept_], dtype=torch.float64),
        }
        for k, member in enumerate(self.members_):
            state.update({f"member{k}.{name}": t for name, t in member._state_dict().items()})
        return state

    def _fitted_meta(self) -> dict[str, Any]:
        return {
            "member_params": [
                {k: v for k, v in m.get_params().items() if k != "verbose"} for m in self.members_
            ],
            "member_fitted": [m._fitted_meta() for m in self.members_],
            "member_valid_rmse": self.member_valid_rmse_,
            "valid_rmse": self.valid_rmse_,
            "groups": [int(g) for g in self.groups_],
            "group_weights": [float(w) for w in self.group_weights_],
            "weights": [float(w) for w in self.weights_],  # for reading; the tensors rule
            "intercept": float(self.intercept_),
        }

    def _load_fitted_meta(self, meta: dict[str, Any]) -> None:
        self._meta = meta
        self.member_valid_rmse_ = meta.get("member_valid_rmse", [])
        self.groups_ = meta.get("groups", [])
        self.group_weights_ = np.asarray(meta.get("group_weights", []), np.float64)
        self.valid_rmse_ = meta.get("valid_rmse")

    def _load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        meta = getattr(self, "_meta", {})
        params, fitted = meta.get("member_params"), meta.get("member_fitted")
        if not isinstance(params, list) or not isinstance(fitted, list) or not params:
            raise CheckpointError("ensemble model.json lacks member_params / member_fitted")
        if len(params) != len(fitted):
            raise CheckpointError("ensemble model.json: member_params and member_fitted differ")
        try:
            weights = state["blend.weights"].numpy().astype(np.float64)
            intercept = float(state["blend.intercept"].reshape(-1)[0])
        except KeyError as exc:
            raise CheckpointError(f"ensemble weights lack {exc}") from None
        if weights.shape != (len(params),):
            raise CheckpointError(
                f"ensemble has {len(params)} members but {weights.shape} blend weights"
            )
        members = []
        for k, (member_params, member_meta) in enumerate(zip(params, fitted, strict=True)):
            prefix = f"member{k}."
            sub = {n.removeprefix(prefix): t for n, t in state.items() if n.startswith(prefix)}
            if not sub:
                raise CheckpointError(f"ensemble weights hold no tensors for member {k}")
            member = DeepRec(**member_params)
            member.user_ids_, member.item_ids_ = self.user_ids_, self.item_ids_
            member.rating_range_, member.global_mean_ = self.rating_range_, self.global_mean_
            member.train_, member.valid_ = self.train_, self.valid_
            member._load_fitted_meta(member_meta)
            member._load_state_dict(sub)
            members.append(member)
        self.members_ = members
        self.weights_, self.intercept_ = weights, intercept
        del self._meta

    @classmethod
    def load(cls, path: str | Path) -> Ensemble:  # type: ignore[override]
        return super().load(path)  # type: ignore[return-value]
