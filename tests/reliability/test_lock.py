"""A run directory is locked while a training writes into it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deeprec.errors import RunLockedError
from deeprec.runs.training import resume_run, train_run
from deeprec.train.checkpoint import list_checkpoints
from deeprec.train.config import TrainConfig
from deeprec.train.lock import RunLock
from fault_injection import command

from .conftest import SETTINGS, cli_env, train_args, wait_for


def test_second_training_into_a_running_directory_fails(prepared, tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(
        command(
            train_args(prepared, run, "epochs=2", "checkpoint_every_batches=2"), batch_delay=0.1
        ),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: len(list_checkpoints(run / "checkpoints")) >= 2, first)
    config_before = (run / "config.yaml").read_text()
    config = TrainConfig().with_overrides([*SETTINGS, "epochs=1", "hidden=[8]"])
    for attempt in (
        lambda: train_run(prepared, config, run, overwrite=True, progress=False),
        lambda: resume_run(run, progress=False),
    ):
        with pytest.raises(RunLockedError) as info:
            attempt()
        message = str(info.value)
        assert str(run) in message and f"pid {first.pid}" in message
    assert (run / "config.yaml").read_text() == config_before  # nothing touched
    assert first.wait(timeout=120) == 0, first.stderr.read()  # the first run finished fine
    assert (run / "summary.json").is_file()
    with RunLock(run):  # released at exit
        pass


def test_lock_is_released_when_the_holder_dies(tmp_path):
    """flock is dropped by the kernel on SIGKILL: no stale lock after a crash."""
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(run / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLockedError, match="locked by another training"):
        RunLock(run).acquire()
    holder.kill()
    holder.wait(timeout=10)
    with RunLock(run) as lock:
        assert lock.held
