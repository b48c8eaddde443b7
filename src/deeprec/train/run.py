"""Train a DeepRec on a prepared dataset into a run directory (what `deeprec train` does)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deeprec.data.dataset import PreparedDataset
from deeprec.estimator import DeepRec
from deeprec.train.config import TrainConfig
from deeprec.train.distributed import is_main_process
from deeprec.train.run_dir import RunDir
from deeprec.train.trainer import EpochRecord


def train_run(
    data_dir: str | Path,
    config: TrainConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, checkpoint best/last every epoch, then score the best model on test."""
    dataset = PreparedDataset.load(data_dir)
    run = RunDir(out)
    main = is_main_process()  # [ddp] under torchrun only rank 0 writes the run directory
    if main:
        run.create(overwrite=overwrite)
        run.write_text("config.yaml", config.to_yaml())
        run.write_json(
            "dataset.json",
            {"path": str(Path(data_dir).resolve()), "meta": dataset.meta},
        )
    model = DeepRec.from_config(config, verbose=progress)
    started = time.perf_counter()

    def on_epoch_end(record: EpochRecord, improved: bool) -> None:
        if not main:  # [ddp]
            return
        run.append_metrics(record.to_dict())
        model.save(run.last)
        if improved:
            model.save(run.best)
        run.plot_curves()
        valid = "n/a" if record.valid_rmse is None else f"{record.valid_rmse:.4f}"
        echo(
            f"epoch {record.epoch:3d}  train_rmse {record.train_rmse:.4f}  valid_rmse {valid}"
            f"  {record.epoch_seconds:.1f}s{'  *best' if improved else ''}"
        )

    model.fit(dataset, on_epoch_end=on_epoch_end)
    summary: dict[str, Any] = {
        "best_epoch": model.best_epoch_,
        "best_valid_rmse": model.best_valid_rmse_,
        "epochs_run": len(model.history_),
        "train_seconds": time.perf_counter() - started,
        "architecture": model.module.architecture(),
    }
    if not main:  # [ddp] the other ranks hold the same weights; rank 0 saves and scores
        return summary
    model.save(run.best)
    if len(dataset.test):
        summary["test"] = model.score(dataset, "test")
    run.write_json("summary.json", summary)
    return summary
