"""Checkpoint frequency options and the tagged-JSON encoding of optimizer/scheduler state."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from deeprec.errors import CheckpointError, ConfigError
from deeprec.runs.training import train_run
from deeprec.train.checkpoint import checkpoint_position, decode, encode, list_checkpoints
from deeprec.train.config import TrainConfig

from .conftest import SETTINGS


def positions(prepared, tmp_path, *extra):
    config = TrainConfig().with_overrides([*SETTINGS, "epochs=3", "checkpoint_keep=1000", *extra])
    train_run(prepared, config, tmp_path / "run", progress=False, echo=lambda _m: None)
    return sorted(checkpoint_position(p) for p in list_checkpoints(tmp_path / "run/checkpoints"))


def test_every_two_epochs_plus_the_last(prepared, tmp_path):
    assert positions(prepared, tmp_path, "checkpoint_every_epochs=2") == [(1, 0), (3, 0), (4, 0)]


def test_every_four_batches(prepared, tmp_path):
    got = positions(prepared, tmp_path, "checkpoint_every_batches=4")
    mid = [(e, b) for e in (1, 2, 3) for b in (4, 8)]
    assert got == sorted([(1, 0), *mid, (2, 0), (3, 0), (4, 0)])


def test_every_n_minutes(prepared, tmp_path):
    # a tiny period: due at every batch end; epochs off, so only time (and the last) counts
    got = positions(
        prepared, tmp_path, "checkpoint_every_minutes=0.0000001", "checkpoint_every_epochs=0"
    )
    assert len(got) == 1 + 3 * 10 and (4, 0) in got


def test_keep_prunes_old_checkpoints(prepared, tmp_path):
    config = TrainConfig().with_overrides([*SETTINGS, "epochs=3", "checkpoint_every_batches=2"])
    train_run(prepared, config, tmp_path / "run", progress=False, echo=lambda _m: None)
    assert [checkpoint_position(p) for p in list_checkpoints(tmp_path / "run/checkpoints")] == [
        (4, 0),
        (3, 8),
    ]


@pytest.mark.parametrize(
    "setting", ["checkpoint_keep=0", "checkpoint_every_batches=-1", "checkpoint_every_minutes=x"]
)
def test_bad_options(setting):
    with pytest.raises(ConfigError):
        TrainConfig().with_overrides([setting])


def test_encode_round_trip():
    value = {
        "t": torch.arange(3.0),
        "scalar": torch.tensor(2.0),
        "tuple": (0.9, 0.999),
        "counter": Counter({24: 1, 36: 2}),
        "int_keys": {0: {"step": torch.tensor(5.0)}, 1: [1, None, "x"]},
        "array": np.arange(4, dtype=np.uint32),
        "__odd": float("inf"),
    }
    tensors: dict = {}
    back = decode(encode(value, "root", tensors), tensors)
    assert back["tuple"] == (0.9, 0.999) and isinstance(back["tuple"], tuple)
    assert back["counter"] == Counter({24: 1, 36: 2}) and isinstance(back["counter"], Counter)
    assert torch.equal(back["int_keys"][0]["step"], torch.tensor(5.0))
    assert back["int_keys"][1] == [1, None, "x"]
    assert np.array_equal(back["array"], np.arange(4, dtype=np.uint32))
    assert back["__odd"] == float("inf") and torch.equal(back["t"], torch.arange(3.0))
    with pytest.raises(CheckpointError, match="cannot store a object"):
        encode({"bad": object()}, "root", {})


def test_reader_only_checkpointer_restores_without_writing(prepared, tmp_path):
    """What a DDP rank > 0 would use: restore the same state, never write."""
    from deeprec.data.dataset import PreparedDataset
    from deeprec.estimator import DeepRec
    from deeprec.train.checkpoint import Checkpointer, read_checkpoint

    from .conftest import assert_same_tensors, best_weights

    config = TrainConfig().with_overrides(
        [*SETTINGS, "epochs=2", "checkpoint_every_batches=5", "checkpoint_keep=100"]
    )
    train_run(prepared, config, tmp_path / "run", progress=False, echo=lambda _m: None)
    folder = tmp_path / "run" / "checkpoints"
    before = sorted(p.name for p in folder.iterdir())
    (mid,) = [p for p in list_checkpoints(folder) if checkpoint_position(p) == (2, 5)]
    reader = Checkpointer(folder, resume_from=read_checkpoint(mid), writes=False)
    model = DeepRec.from_config(config).fit(PreparedDataset.load(prepared), checkpointer=reader)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert [r.epoch for r in model.history_] == [1, 2]
    weights = {f"module.{k}": v for k, v in model.module_.state_dict().items()}
    full = {k: v for k, v in best_weights(tmp_path / "run").items() if k.startswith("module.")}
    assert_same_tensors(weights, full)
