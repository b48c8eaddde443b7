"""A resume makes the fast step's strategy choices of the interrupted process, without
pinned strategies: the planner's measured rates travel in the checkpoint.

compute=fast picks each batch's output and input strategies by rates timed once per
process; the strategies round differently, so a resumed process that timed its own rates
could choose otherwise and drift from the uninterrupted run. Here the two processes'
timings are made to disagree on purpose."""

from __future__ import annotations

import pytest

from deeprec.data.dataset import PreparedDataset
from deeprec.estimator import DeepRec
from deeprec.runs.training import train_run
from deeprec.train import fast_step
from deeprec.train.checkpoint import (
    Checkpointer,
    checkpoint_position,
    list_checkpoints,
    read_checkpoint,
)
from deeprec.train.config import TrainConfig

from .conftest import SETTINGS, assert_same_tensors, best_weights

# seconds per work unit as if timed: the first process finds dense work cheap, the
# resumed one finds sparse work cheap (so it would choose the other strategies)
DENSE_CHEAP = {"dense": 1.0, "sparse": 50.0, "input-dense": 1.0, "input-sparse": 50.0}
SPARSE_CHEAP = {"dense": 50.0, "sparse": 1.0, "input-dense": 50.0, "input-sparse": 1.0}


def timings(monkeypatch, rates: dict[str, float]) -> None:
    monkeypatch.setattr(fast_step, "_CALIBRATION", {})
    monkeypatch.setattr(fast_step, "_time_strategies", lambda net, batch, eligible: dict(rates))


@pytest.fixture
def unpinned(monkeypatch):
    monkeypatch.delenv("DEEPREC_OUTPUT_STRATEGY", raising=False)
    monkeypatch.delenv("DEEPREC_INPUT_STRATEGY", raising=False)


def test_resumed_process_chooses_as_the_interrupted_one(prepared, tmp_path, monkeypatch, unpinned):
    config = TrainConfig().with_overrides(
        [*SETTINGS, "epochs=2", "checkpoint_every_batches=5", "checkpoint_keep=100"]
    )
    assert config.compute == "fast" and config.refeed_steps == 1  # dense or sparse output
    timings(monkeypatch, DENSE_CHEAP)
    train_run(prepared, config, tmp_path / "run", progress=False, echo=lambda _m: None)
    folder = tmp_path / "run" / "checkpoints"
    (mid,) = [p for p in list_checkpoints(folder) if checkpoint_position(p) == (2, 5)]
    ckpt = read_checkpoint(mid)
    assert ckpt.state["planner_rates"] == DENSE_CHEAP

    timings(monkeypatch, SPARSE_CHEAP)  # the resumed process would time otherwise
    chosen = []
    choose = fast_step.Planner.choose

    def spy(self, batch):
        chosen.append(choose(self, batch))
        return chosen[-1]

    monkeypatch.setattr(fast_step.Planner, "choose", spy)
    reader = Checkpointer(folder, resume_from=ckpt, writes=False)
    model = DeepRec.from_config(config)
    model.fit(PreparedDataset.load(prepared), checkpointer=reader)
    assert chosen == [("dense", "dense")] * 5  # (input, output) for the rest of epoch 2
    weights = {f"module.{k}": v for k, v in model.module_.state_dict().items()}
    full = {k: v for k, v in best_weights(tmp_path / "run").items() if k.startswith("module.")}
    assert_same_tensors(weights, full)
