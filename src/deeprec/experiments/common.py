"""What every recipe shares: the run settings, user subsampling, and one traced training run.

Recipes and `deeprec tune` train through the estimator (`DeepRec.fit`, the code `deeprec
train` runs), so no config option can be dropped; a small hook on the Trainer the estimator
builds records per-mini-batch training RMSE.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deeprec.data.dataset import PreparedDataset, Split
from deeprec.errors import ConfigError, DataError
from deeprec.step.reference import StepResult
from deeprec.train.config import TrainConfig
from deeprec.train.trainer import EpochRecord, Trainer


@dataclass
class RecipeOutput:
    """What a recipe wrote: its rows (the results table) and files, and how long it took."""

    name: str
    out: Path
    rows: list[dict[str, Any]]
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Settings:
    """Options common to every recipe (the CLI's --epochs/--subsample/--seed/--set)."""

    dataset: PreparedDataset
    out: Path
    data_path: str = "<in memory>"
    epochs: int | None = None  # None: the recipe's default
    subsample: float = 1.0
    seed: int = 42
    config_values: dict[str, Any] = field(default_factory=dict)  # from --config FILE.yaml
    overrides: list[str] = field(default_factory=list)  # --set key=value
    threads: int = 0
    progress: bool = False
    baseline_epochs: int | None = None  # comparison only: cap on the baselines' epochs

    def base_config(self, **recipe_values: Any) -> TrainConfig:
        """Recipe defaults, then --config, then --set, then --epochs and --seed."""
        config = TrainConfig.from_dict(
            {**recipe_values, **self.config_values}, source="recipe + --config"
        )
        config = config.with_overrides(list(self.overrides))
        values = config.to_dict()
        if self.epochs is not None:
            values["epochs"] = self.epochs
        values["seed"] = self.seed
        if self.threads:
            values["threads"] = self.threads
        return TrainConfig.from_dict(values, source="experiment")


def variant(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of `config` with the recipe's varied keys replaced (validated)."""
    values = config.to_dict()
    unknown = sorted(set(changes) - set(values))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}")
    values.update(changes)
    return TrainConfig.from_dict(values, source="variant")


def subsample_users(dataset: PreparedDataset, fraction: float, seed: int) -> PreparedDataset:
    """Keep a seeded random `fraction` of users (all their ratings), re-indexed.

    Items without a training rating among the kept users are dropped, and so are their
    valid/test ratings (counted in ``meta["subsample"]``).
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"subsample must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return dataset
    rng = np.random.default_rng(seed)
    n_keep = max(1, round(dataset.n_users * fraction))
    users = np.sort(rng.choice(dataset.n_users, size=n_keep, replace=False))
    user_map = np.full(dataset.n_users, -1, dtype=np.int64)
    user_map[users] = np.arange(users.shape[0])
    train_users = user_map[dataset.train.users]
    items = np.unique(dataset.train.items[train_users >= 0])
    if items.shape[0] == 0:
        raise DataError(f"subsample {fraction} left no training ratings")
    item_map = np.full(dataset.n_items, -1, dtype=np.int64)
    item_map[items] = np.arange(items.shape[0])
    parts: dict[str, Split] = {}
    dropped: dict[str, int] = {}
    for name in ("train", "valid", "test"):
        part = dataset.split(name)
        u = user_map[part.users]
        i = item_map[part.items]
        keep = (u >= 0) & (i >= 0)
        dropped[name] = int(((u >= 0) & (i < 0)).sum())
        parts[name] = Split(
            users=u[keep].astype(np.int32),
            items=i[keep].astype(np.int32),
            ratings=part.ratings[keep],
            timestamps=None if part.timestamps is None else part.timestamps[keep],
        )
    meta = dict(dataset.meta)
    meta["subsample"] = {
        "fraction": fraction,
        "seed": seed,
        "users": int(users.shape[0]),
        "items": int(items.shape[0]),
        "dropped_unseen_items": dropped,
    }
    meta["rating_range"] = list(dataset.rating_range)
    return PreparedDataset(
        user_ids=dataset.user_ids[users], item_ids=dataset.item_ids[items], meta=meta, **parts
    )


@dataclass
class TracedRun:
    """One training run's curves and final numbers."""

    label: str
    config: TrainConfig
    history: list[EpochRecord]
    batch_rmse: list[tuple[int, int, float]]  # (epoch, batch index, training RMSE)
    best_epoch: int | None
    best_valid_rmse: float | None
    test_rmse: float | None
    n_params: int
    architecture: str
    seconds: float
    diverged: str | None = None  # the TrainingError message when the loss became NaN/inf
    model: Any = None  # the trained AutoEncoder (best-by-validation weights) when kept


class _BatchHook:
    """Passed to `DeepRec.fit` as its `checkpointer`: the estimator hands it the Trainer it
    built (``attach``), so a recipe can record per-batch RMSE and recover the best weights
    of a diverged run without a second training path."""

    def __init__(self, on_batch_end: Any = None) -> None:
        self.on_batch_end = on_batch_end
        self.trainer: Trainer | None = None

    def attach(self, trainer: Trainer) -> None:
        self.trainer = trainer
        trainer.on_batch_end = self.on_batch_end


def train_traced(
    dataset: PreparedDataset,
    config: TrainConfig,
    label: str,
    *,
    record_batches: bool = False,
    progress: bool = False,
    keep_model: bool = False,
) -> TracedRun:
    """Train one config; return per-epoch (and optionally per-batch) curves and test RMSE.

    Training goes through the estimator (`DeepRec.fit`, what `deeprec train` runs), so every
    option of the config (``center``, ``orientation``, input transforms, ...) is honoured
    exactly as there. The test RMSE is that of the best-by-validation epoch, clipped to the
    rating scale (the project's headline convention). A NaN/inf loss ends the run and is
    recorded, not raised, so one diverging variant (e.g. a high learning rate) does not
    lose the others. With `keep_model` the fitted DeepRec is kept in ``TracedRun.model``.
    """
    from deeprec.errors import TrainingError
    from deeprec.estimator import DeepRec

    if dataset.train.ratings.shape[0] == 0:
        raise DataError("cannot train on an empty training split")
    batches: list[tuple[int, int, float]] = []
    history: list[EpochRecord] = []

    def on_batch_end(epoch: int, index: int, step: StepResult) -> None:
        batches.append((epoch, index, math.sqrt(step.sse / max(step.count, 1))))

    hook = _BatchHook(on_batch_end if record_batches else None)
    model = DeepRec(**config.to_dict(), verbose=progress)
    started = time.perf_counter()
    diverged = None
    usable = True
    try:
        model.fit(
            dataset,
            on_epoch_end=lambda record, _improved: history.append(record),
            checkpointer=hook,
        )
        best_epoch, best_valid = model.best_epoch_, model.best_valid_rmse_
    except TrainingError as exc:
        diverged = str(exc)
        valid = [r for r in history if r.valid_rmse is not None]
        best = min(valid, key=lambda r: r.valid_rmse) if valid else None
        best_epoch = best.epoch if best else None
        best_valid = best.valid_rmse if best else None
        # the Trainer already put the module back at its best weights, if it had any
        usable = hook.trainer is not None and hook.trainer.best_state is not None
        model.module_ = model.module_.cpu().eval()
        model.history_, model.best_epoch_, model.best_valid_rmse_ = history, best_epoch, best_valid
    seconds = time.perf_counter() - started
    test_rmse = None
    if len(dataset.test) and usable:
        test_rmse = float(model.score(dataset, "test")["rmse"])
    module = model.module_
    return TracedRun(
        label=label,
        config=config,
        history=history,
        batch_rmse=batches,
        best_epoch=best_epoch,
        best_valid_rmse=best_valid,
        test_rmse=test_rmse,
        n_params=sum(p.numel() for p in module.parameters()),
        architecture=module.architecture(),
        seconds=seconds,
        diverged=diverged,
        model=model if keep_model and usable else None,
    )
