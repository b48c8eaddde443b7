"""TensorBoard event files in the run directory: per-epoch train/valid RMSE and lr."""

from __future__ import annotations

import json

import pytest

from deeprec.data.dataset import PreparedDataset
from deeprec.recommend.honesty import low_rank_ratings
from deeprec.runs.training import resume_run, train_run
from deeprec.train.config import TrainConfig


def _scalars(run) -> dict[str, dict[int, float]]:
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(str(run))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def test_event_files_hold_the_metrics_per_epoch(tmp_path):
    pytest.importorskip("torch.utils.tensorboard", reason="tensorboard is not installed")
    frame = low_rank_ratings(60, 30, density=0.4, seed=2)
    valid = frame.sample(frac=0.1, random_state=0)
    dataset = PreparedDataset.from_tables(frame.drop(valid.index), valid)
    dataset.save(tmp_path / "data")
    config = TrainConfig(hidden=[8], epochs=3, batch_size=16, early_stopping=0, seed=0)
    run = tmp_path / "run"
    train_run(tmp_path / "data", config, run, progress=False, echo=lambda _: None)
    assert list(run.glob("events.out.tfevents.*"))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scalars = _scalars(run)
    assert set(scalars) == {"rmse/train", "rmse/valid", "lr"}
    for tag, key in (("rmse/train", "train_rmse"), ("rmse/valid", "valid_rmse"), ("lr", "lr")):
        assert scalars[tag] == pytest.approx({r["epoch"]: r[key] for r in records}, rel=1e-6)
    resume_run(run, overrides=["epochs=5"], progress=False, echo=lambda _: None)
    assert sorted(_scalars(run)["rmse/train"]) == [1, 2, 3, 4, 5]  # each epoch once
