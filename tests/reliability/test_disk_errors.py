"""Disk full or read-only output: a clear CheckpointError naming the path and errno, the
previous good checkpoint and best model intact, and the run resumable to the same bits."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
import safetensors.torch

from deeprec.base import load_model
from deeprec.errors import CheckpointError
from deeprec.runs.training import resume_run, train_run
from deeprec.train.checkpoint import list_checkpoints, read_checkpoint
from deeprec.train.config import TrainConfig

from .conftest import (
    SETTINGS,
    assert_nothing_truncated,
    assert_same_tensors,
    best_weights,
    curve,
)

CONFIG = [*SETTINGS, "epochs=3", "checkpoint_every_batches=4"]


def quiet(_message: str) -> None:
    return None


@pytest.fixture(scope="module")
def reference(prepared, tmp_path_factory):
    run = tmp_path_factory.mktemp("disk") / "reference"
    train_run(prepared, TrainConfig().with_overrides(CONFIG), run, progress=False, echo=quiet)
    return run


def fail_nth_write(monkeypatch, n: int, code: int) -> list[str]:
    """Make the n-th safetensors write (checkpoints and best/ models) write half a file
    and then fail like a full disk would."""
    real = safetensors.torch.save_file
    calls: list[str] = []

    def flaky(tensors, filename, metadata=None):
        calls.append(str(filename))
        if len(calls) == n:
            with open(filename, "wb") as handle:
                handle.write(b"\0" * 100)
            raise OSError(code, os.strerror(code), str(filename))
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", flaky)
    return calls


def no_temporaries(run) -> bool:
    return not [p for p in run.rglob("*") if p.name.endswith(".tmp") or ".old-" in p.name]


# Writes in order: ckpt e1b0, e1b4, e1b8, best/ (epoch 1), ckpt e2b0, e2b4, e2b8, ...
@pytest.mark.parametrize(
    ("n", "kind"), [(3, "ckpt-e000001-b00000008"), (4, ".best."), (5, "ckpt-e000002-b00000000")]
)
def test_disk_full_keeps_previous_checkpoint(prepared, reference, tmp_path, monkeypatch, n, kind):
    run = tmp_path / "run"
    config = TrainConfig().with_overrides(CONFIG)
    calls = fail_nth_write(monkeypatch, n, errno.ENOSPC)
    with pytest.raises(CheckpointError) as info:
        train_run(prepared, config, run, progress=False, echo=quiet)
    message = str(info.value)
    assert "No space left on device (errno 28, ENOSPC)" in message
    failed = calls[-1]
    assert kind in failed and len(calls) == n
    target = "best" if kind == ".best." else "checkpoints"
    assert str(run / target) in message
    assert "intact" in message
    assert no_temporaries(run)
    assert assert_nothing_truncated(run) >= 2
    monkeypatch.undo()
    resume_run(run, progress=False, echo=quiet)  # the disk has room again
    assert_same_tensors(best_weights(run), best_weights(reference))
    assert curve(run) == curve(reference)


def test_read_only_run_directory(prepared, reference, tmp_path, monkeypatch):
    """Real chmod when not root; as root (permissions do not apply) the write fails with
    EROFS at the same place, as on a read-only mount."""
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    good = {p.name: p.read_bytes() for p in list_checkpoints(run / "checkpoints")}
    best_before = best_weights(run)
    folder = run / "checkpoints"
    if os.geteuid() != 0:
        folder.chmod(0o555)
        expected = "errno 13, EACCES"
    else:
        import deeprec.atomic

        def read_only(*_args, **_kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(deeprec.atomic.tempfile, "mkstemp", read_only)
        expected = "errno 30, EROFS"
    try:
        with pytest.raises(CheckpointError, match=expected) as info:
            resume_run(run, overrides=["epochs=4"], progress=False, echo=quiet)
    finally:
        folder.chmod(0o755)
        monkeypatch.undo()
    assert "cannot write" in str(info.value)
    assert {p.name: p.read_bytes() for p in list_checkpoints(folder)} == good
    for path in list_checkpoints(folder):
        read_checkpoint(path)
    assert_same_tensors(best_weights(run), best_before)
    load_model(run / "best")
    assert no_temporaries(run)
