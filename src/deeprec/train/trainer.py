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

from deeprec.data.batching import epoch_order, iter_row_batches, prefetch, prefetch_depth
from deeprec.data.dataset import PreparedDataset
from deeprec.data.sparse import CSRMatrix
from deeprec.errors import ConfigError, TrainingError
from deeprec.model.autoencoder import AutoEncoder
from deeprec.train.config import TrainConfig
from deeprec.train.distributed import DataParallel, DistContext, model_device
from deeprec.train.evaluation import RatingScale, evaluate_sse
from deeprec.train.optim import build_optimizer, build_scheduler
from deeprec.train.step import StepResult, make_step


@dataclass
class OrientedData:
    """The dataset's splits as row matrices in the model's orientation; `teacher`, when
    distilling, the teacher's dense predictions as (rows x columns) targets in the model's
    target space (deeprec.teacher)."""

    train: CSRMatrix
    valid: CSRMatrix
    test: CSRMatrix
    teacher: torch.Tensor | None = None

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
# (epoch, 0-based batch index, the step's sse/count/loss); used for per-batch curves.
BatchCallback = Callable[[int, int, StepResult], None]
GRAPH_CHUNK = 64  # batches queued per progress-bar update on the GPU path


def build_model(config: TrainConfig, n_inputs: int, n_rows: int = 0) -> AutoEncoder:
    """The config's autoencoder over n_inputs columns; n_rows (the number of rows of the
    rating matrix) is needed only by global_kernel."""
    return AutoEncoder(
        n_inputs,
        config.hidden,
        activation=config.activation,
        last_activation=config.last_activation,
        dropout=config.dropout,
        dropout_placement=config.dropout_placement,
        constrained=config.constrained,
        input_row_scale=config.input_row_scale,
        rated_indicator=config.rated_indicator,
        weight_kernel_dim=config.weight_kernel_dim,
        global_kernel=config.global_kernel,
        n_rows=n_rows,
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
        rating_scale: RatingScale | None = None,
        progress: bool = False,
        on_epoch_end: EpochCallback | None = None,
        on_batch_end: BatchCallback | None = None,
        dist: DistContext | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.data = data
        self.rating_range = rating_range
        # outputs -> ratings, so validation is clipped RMSE on the rating scale (evaluation.py)
        self.rating_scale = rating_scale
        self.progress = progress
        self.on_epoch_end = on_epoch_end
        self.on_batch_end = on_batch_end
        self.optimizer = build_optimizer(model.parameters(), config)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.train_rows = np.flatnonzero(data.train.row_lengths() > 0)
        # --- reliability (issue 8): set by train.checkpoint.Checkpointer.attach() ---
        self.checkpointer: Any = None  # writes checkpoints at batch/epoch ends
        self.resume_state: Any = None  # a checkpoint's position and progress to continue from
        # [ddp/device] batches go to the model's device; under torchrun, steps run through
        # DDP on this rank's slice of each global batch (see train/distributed.py).
        self.device = model_device(model)
        if dist is not None and config.optimizer == "lbfgs":
            raise ConfigError("optimizer lbfgs is not supported with distributed training")
        self.ddp = DataParallel(model, dist, seed=config.seed) if dist is not None else None
        # compute/precision dispatch. Under DDP the autograd (reference) step runs through the
        # DDP module; the fast step computes gradients by hand and all-reduces them itself.
        autograd_ddp = self.ddp is not None and config.compute == "reference"
        teacher = None if data.teacher is None else data.teacher.to(self.device)
        self.step = make_step(
            self.ddp.module if autograd_ddp else model, self.optimizer, config, teacher
        )
        if self.ddp is not None and not autograd_ddp:
            self.step.before_update = self.ddp.before_update
        # [gpu] compute=fast on CUDA: whole epochs of CUDA-graph steps (step/graph.py),
        # built at the first epoch that can use them; None until then or where they do not apply
        self.graph_step: Any = None
        self.graph_step_skipped: str | None = None  # why the per-batch step runs on CUDA
        self.graph_step_on_cpu = False  # tests: run the GPU path's step eagerly on the CPU

    def _graph_step(self) -> Any:
        """The GraphStep for this epoch, or None (the per-batch path). It needs every batch's
        work queued without a read-back, so per-batch consumers (on_batch_end, mid-epoch
        checkpoints) and torchrun keep the per-batch step."""
        config = self.config
        on_device = self.device.type == "cuda" or self.graph_step_on_cpu
        if not on_device or config.compute != "fast" or not config.cuda_graphs:
            return None
        from deeprec.step.graph import GraphStep, unsupported_reason

        reason = unsupported_reason(self.model, self.optimizer)
        if self.ddp is not None:
            reason = "torchrun"
        elif self.on_batch_end is not None:
            reason = "a per-batch callback"
        elif self.checkpointer is not None and (
            config.checkpoint_every_batches or config.checkpoint_every_minutes
        ):
            reason = "mid-epoch checkpoints"
        self.graph_step_skipped = reason
        if reason is not None:
            return None
        if self.graph_step is None:
            self.graph_step = GraphStep(
                self.model,
                self.optimizer,
                self.data.train,
                batch_size=config.batch_size,
                precision=config.precision,
                refeed_steps=config.refeed_steps,
                input_dropout=config.input_dropout,
            )
        return self.graph_step

    def fit(self, start_epoch: int = 1) -> TrainResult:
        config = self.config
        result = TrainResult()
        has_valid = self.data.valid.nnz > 0
        epochs_without_gain = 0
        # --- reliability (issue 8): continue from a checkpoint (see train/checkpoint.py) ---
        start_batch, carry = 0, (0.0, 0)
        if self.resume_state is not None:
            resume = self.resume_state
            result, epochs_without_gain = resume.result, resume.epochs_without_gain
            start_epoch, start_batch, carry = resume.epoch, resume.batch, (resume.sse, resume.count)
            self.best_state = resume.best_state
            weights_changed = getattr(self.step, "weights_changed", None)
            if weights_changed is not None:  # e.g. the fast step's bf16 weight copies
                weights_changed()
        if self.checkpointer is not None:
            self.checkpointer.begin(result, epochs_without_gain)
        # --- end reliability ---
        for epoch in range(start_epoch, config.epochs + 1):
            try:
                record = self._run_epoch(epoch, has_valid, start_batch, carry)
            except TrainingError:
                if self.best_state is not None:  # leave the model at its last good weights
                    self.model.load_state_dict(self.best_state)
                raise
            start_batch, carry = 0, (0.0, 0)
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
            if self.checkpointer is not None:  # reliability (issue 8)
                self.checkpointer.epoch_end(self, epoch, result, epochs_without_gain)
            if result.stopped_early:
                break
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return result

    def _run_epoch(
        self,
        epoch: int,
        has_valid: bool,
        start_batch: int = 0,
        carry: tuple[float, int] = (0.0, 0),
    ) -> EpochRecord:
        """One epoch; `start_batch`/`carry` (batches done, their SSE and count) resume one
        that a checkpoint interrupted, replaying the same (seed, epoch) order."""
        return self._run_epoch_steps(epoch, has_valid, start_batch, carry)

    def _run_graph_epoch(
        self, graph: Any, epoch: int, order: np.ndarray, start_batch: int, carry
    ) -> tuple[float, int]:
        """Queue the epoch's steps in chunks (the progress bar moves per chunk) and read the
        SSE once at the end; a non-finite loss is therefore reported per epoch, not batch."""
        config = self.config
        plan = graph.plan(order)
        graph.begin_epoch(plan, sse=carry[0])
        bar = tqdm(
            total=plan.n_batches,
            initial=start_batch,
            desc=f"epoch {epoch}/{config.epochs}",
            unit="batch",
            disable=not self.progress,
            leave=False,
        )
        with bar:
            for begin in range(start_batch, plan.n_batches, GRAPH_CHUNK):
                stop = min(begin + GRAPH_CHUNK, plan.n_batches)
                graph.run(begin, stop)
                bar.update(stop - begin)
            sse = graph.sse()
        if not math.isfinite(sse):
            raise TrainingError(
                f"loss became {sse} in epoch {epoch} (the GPU step checks once per epoch); "
                "try a lower lr (the last good checkpoint is kept)"
            )
        return sse, carry[1] + graph.count

    def _run_epoch_steps(
        self, epoch: int, has_valid: bool, start_batch: int, carry: tuple[float, int]
    ) -> EpochRecord:
        config = self.config
        self.model.train()
        order = epoch_order(self.train_rows, config.seed, epoch)
        n_batches = math.ceil(order.shape[0] / config.batch_size)
        lr = self.optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        sse, count = carry
        graph = self._graph_step()
        if graph is not None:  # [gpu] batches built and stepped on the GPU, read back once
            sse, count = self._run_graph_epoch(graph, epoch, order, start_batch, carry)
        else:
            if self.ddp is not None:  # [ddp] this rank's slice of every global batch
                batches = self.ddp.batches(self.data.train, order, config.batch_size, start_batch)
            else:
                batches = iter_row_batches(
                    self.data.train,
                    order,
                    config.batch_size,
                    start=start_batch,
                    prepare=config.compute == "fast",
                )
            # the next batch is built on a thread during this step, where a core is free for it
            batches = prefetch(batches, depth=prefetch_depth(self.device))
            bar = tqdm(
                batches,
                total=n_batches,
                initial=start_batch,
                desc=f"epoch {epoch}/{config.epochs}",
                unit="batch",
                disable=not self.progress,
                leave=False,
            )
            for index, batch in enumerate(bar, start=start_batch):
                if self.ddp is not None:  # [ddp] arm this slice's loss weights
                    self.ddp.begin_step(batch)
                batch = batch.to(self.device)  # [device]
                step = self.step(batch)
                if not math.isfinite(step.loss):
                    raise TrainingError(
                        f"loss became {step.loss} at epoch {epoch}, batch {index + 1}/{n_batches}; "
                        "try a lower lr (the last good checkpoint is kept)"
                    )
                sse += step.sse
                count += step.count
                if self.on_batch_end is not None:
                    self.on_batch_end(epoch, index, step)
                if self.checkpointer is not None and index + 1 < n_batches:  # reliability
                    self.checkpointer.batch_end(self, epoch, index + 1, sse, count)
        if self.ddp is not None:  # [ddp] replicas still agree; train RMSE over all ranks
            sse, count = self.ddp.end_epoch(sse, count)
        if self.scheduler is not None:
            self.scheduler.step()
        epoch_seconds = time.perf_counter() - start
        valid_rmse = valid_mae = None
        eval_start = time.perf_counter()
        if has_valid:
            evaluate = self.ddp.evaluate_sse if self.ddp is not None else evaluate_sse  # [ddp]
            v_sse, v_sae, v_n = evaluate(
                self.model,
                self.data.train,
                self.data.valid,
                batch_size=config.eval_batch_size,
                clip=self.rating_range,
                compute=config.compute,
                ratings=self.rating_scale,
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
