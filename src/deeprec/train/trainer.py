"""The training loop: epochs over shuffled rows, re-feeding, validation, best checkpoint.

Data order is a function of (seed, epoch) and dropout draws come from a seeded generator,
so a run is bit-reproducible on one machine and thread count.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from deeprec.data.batching import epoch_order, iter_row_batches, prefetch
from deeprec.data.dataset import PreparedDataset
from deeprec.data.sparse import CSRMatrix
from deeprec.errors import TrainingError
from deeprec.model.autoencoder import AutoEncoder
from deeprec.train.config import TrainConfig
from deeprec.train.evaluation import evaluate_sse
from deeprec.train.optim import build_optimizer, build_scheduler
from deeprec.train.step import make_step


@dataclass
class OrientedData:
    """The dataset's splits as row matrices in the model's orientation."""

    train: CSRMatrix
    valid: CSRMatrix
    test: CSRMatrix

    @classmethod
    def from_dataset(cls, dataset: PreparedDataset, orientation: str) -> OrientedData:
        mats = {name: dataset.csr(name) for name in ("train", "valid", "test")}
        if orientation == "item":
            mats = {name: m.transpose() for name, m in mats.items()}
        return cls(**mats)


@dataclass
class EpochRecord:
    epoch: int
    train_rmse: float
    valid_rmse: float | None
    valid_mae: float | None
    lr: float
    epoch_seconds: float
    eval_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TrainResult:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    best_valid_rmse: float | None = None
    stopped_early: bool = False


EpochCallback = Callable[[EpochRecord, bool], None]


def build_model(config: TrainConfig, n_inputs: int) -> AutoEncoder:
    return AutoEncoder(
        n_inputs,
        config.hidden,
        activation=config.activation,
        last_activation=config.last_activation,
        dropout=config.dropout,
        dropout_placement=config.dropout_placement,
        constrained=config.constrained,
    )


class Trainer:
    """Trains an AutoEncoder on oriented CSR data; keeps the best-by-validation weights."""

    def __init__(
        self,
        model: AutoEncoder,
        config: TrainConfig,
        data: OrientedData,
        *,
        rating_range: tuple[float, float] | None = None,
        progress: bool = False,
        on_epoch_end: EpochCallback | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.data = data
        self.rating_range = rating_range
        self.progress = progress
        self.on_epoch_end = on_epoch_end
        self.optimizer = build_optimizer(model.parameters(), config)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.step = make_step(model, self.optimizer, config)  # compute/precision dispatch
        self.best_state: dict[str, torch.Tensor] | None = None
        self.train_rows = np.flatnonzero(data.train.row_lengths() > 0)

    def fit(self, start_epoch: int = 1) -> TrainResult:
        config = self.config
        result = TrainResult()
        has_valid = self.data.valid.nnz > 0
        epochs_without_gain = 0
        for epoch in range(start_epoch, config.epochs + 1):
            record = self._run_epoch(epoch, has_valid)
            improved = False
            if has_valid and record.valid_rmse is not None:
                if result.best_valid_rmse is None or record.valid_rmse < result.best_valid_rmse:
                    improved = True
            elif not has_valid:
                improved = True  # no validation: the last epoch is the model
            if improved:
                result.best_epoch = epoch
                result.best_valid_rmse = record.valid_rmse
                self.best_state = copy.deepcopy(self.model.state_dict())
                epochs_without_gain = 0
            else:
                epochs_without_gain += 1
            result.history.append(record)
            if self.on_epoch_end is not None:
                self.on_epoch_end(record, improved)
            if config.early_stopping and epochs_without_gain >= config.early_stopping:
                result.stopped_early = True
                break
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return result

    def _run_epoch(self, epoch: int, has_valid: bool) -> EpochRecord:
        config = self.config
        self.model.train()
        order = epoch_order(self.train_rows, config.seed, epoch)
        n_batches = math.ceil(order.shape[0] / config.batch_size)
        lr = self.optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        sse = 0.0
        count = 0
        batches = prefetch(
            iter_row_batches(
                self.data.train, order, config.batch_size, prepare=config.compute == "fast"
            )
        )
        bar = tqdm(
            batches,
            total=n_batches,
            desc=f"epoch {epoch}/{config.epochs}",
            unit="batch",
            disable=not self.progress,
            leave=False,
        )
        for index, batch in enumerate(bar):
            step = self.step(batch)
            if not math.isfinite(step.loss):
                raise TrainingError(
                    f"loss became {step.loss} at epoch {epoch}, batch {index + 1}/{n_batches}; "
                    "try a lower lr (the last good checkpoint is kept)"
                )
            sse += step.sse
            count += step.count
        if self.scheduler is not None:
            self.scheduler.step()
        epoch_seconds = time.perf_counter() - start
        valid_rmse = valid_mae = None
        eval_start = time.perf_counter()
        if has_valid:
            v_sse, v_sae, v_n = evaluate_sse(
                self.model,
                self.data.train,
                self.data.valid,
                batch_size=config.eval_batch_size,
                clip=self.rating_range,
                compute=config.compute,
            )
            valid_rmse = math.sqrt(v_sse / v_n)
            valid_mae = v_sae / v_n
        return EpochRecord(
            epoch=epoch,
            train_rmse=math.sqrt(sse / max(count, 1)),
            valid_rmse=valid_rmse,
            valid_mae=valid_mae,
            lr=lr,
            epoch_seconds=epoch_seconds,
            eval_seconds=time.perf_counter() - eval_start,
        )
