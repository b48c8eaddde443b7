"""Exact resume: a run killed anywhere (mid-epoch, or inside a checkpoint write) and resumed
ends with the same bits as a run never interrupted, and no file on disk is ever torn."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from deeprec.errors import ConfigError
from deeprec.runs.training import resume_run, train_run
from deeprec.train.checkpoint import checkpoint_position, list_checkpoints, read_checkpoint
from deeprec.train.config import TrainConfig
from fault_injection import command

from .conftest import (
    SETTINGS,
    assert_nothing_truncated,
    assert_same_tensors,
    best_weights,
    cli_env,
    curve,
    final_state,
    resume_args,
    run_cli,
    train_args,
    wait_for,
)

CKPT = ("checkpoint_every_batches=3",)


@pytest.fixture(scope="module")
def baseline(prepared, tmp_path_factory) -> Path:
    """One uninterrupted run through the CLI (same seed and settings)."""
    out = tmp_path_factory.mktemp("baseline") / "run"
    done = run_cli(train_args(prepared, out, *CKPT))
    assert done.returncode == 0, done.stderr
    return out


def assert_same_run(run: Path, reference: Path) -> None:
    assert_same_tensors(best_weights(run), best_weights(reference))
    assert_same_tensors(final_state(run), final_state(reference))
    assert curve(run) == curve(reference)


def test_resume_from_every_position_is_bit_identical(prepared, tmp_path):
    """In-process: checkpoint after every batch, then resume from each checkpoint of one
    epoch (every batch boundary) and from each epoch boundary."""
    config = TrainConfig().with_overrides(
        [*SETTINGS, "checkpoint_every_batches=1", "checkpoint_keep=1000"]
    )
    full = tmp_path / "full"
    train_run(prepared, config, full, progress=False, echo=lambda _m: None)
    checkpoints = sorted(list_checkpoints(full / "checkpoints"))
    assert len(checkpoints) == 4 * 10 + 1  # 9 mid-epoch + 1 boundary per epoch, plus start
    chosen = [
        c for c in checkpoints if checkpoint_position(c)[0] == 4 or checkpoint_position(c)[1] == 0
    ]
    assert len(chosen) >= 12
    for index, start in enumerate(chosen):
        copy = tmp_path / f"resume{index}"
        shutil.copytree(full, copy, ignore=shutil.ignore_patterns("best", "summary.json"))
        for later in list_checkpoints(copy / "checkpoints"):
            if later.name > start.name:
                later.unlink()
        resume_run(copy, progress=False, echo=lambda _m: None)
        assert_same_tensors(best_weights(copy), best_weights(full))
        assert curve(copy) == curve(full), start.name
        last = sorted(list_checkpoints(copy / "checkpoints"))[-1]
        assert_same_tensors(read_checkpoint(last).tensors, read_checkpoint(checkpoints[-1]).tensors)


def _temporaries(run: Path) -> list[Path]:
    return [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def _mid_epoch(run: Path, epoch: int) -> bool:
    positions = map(checkpoint_position, list_checkpoints(run / "checkpoints"))
    return any(e == epoch and b > 0 for e, b in positions)


def test_sigkill_in_checkpoint_write_and_mid_epoch_then_resume(prepared, baseline, tmp_path):
    """Kill 1: the writer SIGKILLs itself inside its 5th checkpoint write (the end of epoch
    1), after the temporary file is complete and before the rename. Kill 2: SIGKILL from
    outside in the middle of epoch 3 of the resumed process. The second resume must end
    with the uninterrupted run's bits, and no non-temporary file may ever be torn."""
    run = tmp_path / "run"
    died = run_cli(command(train_args(prepared, run, *CKPT), crash_in_checkpoint=5))
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert len(_temporaries(run)) == 1  # the torn write exists only as a temporary
    assert assert_nothing_truncated(run) >= 4
    newest = read_checkpoint(list_checkpoints(run / "checkpoints")[0])
    assert (newest.epoch, newest.batch) == (1, 9)  # the previous good one, intact

    proc = subprocess.Popen(
        command(resume_args(run), batch_delay=0.15),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: _mid_epoch(run, 3), proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert not _temporaries(run) or len(_temporaries(run)) == 1
    assert assert_nothing_truncated(run) >= 4
    newest = read_checkpoint(list_checkpoints(run / "checkpoints")[0])
    assert newest.epoch == 3 and newest.batch > 0  # really killed mid-epoch

    done = run_cli(resume_args(run))
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    assert not _temporaries(run)
    assert_nothing_truncated(run)
    assert_same_run(run, baseline)


def test_resume_of_finished_run_changes_nothing(baseline, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(baseline, run)
    before = best_weights(run)
    messages: list[str] = []
    resume_run(run, progress=False, echo=messages.append)
    assert "resuming" in messages[0]
    assert_same_tensors(best_weights(run), before)
    assert curve(run) == curve(baseline)


def test_resume_refuses_changes_that_would_alter_the_run(baseline, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(baseline, run)
    with pytest.raises(ConfigError, match="--resume cannot change lr"):
        resume_run(run, overrides=["lr=0.1"], progress=False, echo=lambda _m: None)
    resume_run(run, overrides=["epochs=5"], progress=False, echo=lambda _m: None)
    assert [r[0] for r in curve(run)] == [1, 2, 3, 4, 5]  # more epochs: allowed
    assert curve(run)[:4] == curve(baseline)


def test_auto_resume_starts_then_continues_the_same_command(prepared, baseline, tmp_path):
    """`deeprec train ... --auto-resume`, the command a restarting launcher reruns: it starts
    a fresh --out, continues a killed one bit for bit, and refuses another model."""
    run = tmp_path / "run"
    args = [*train_args(prepared, run, *CKPT), "--auto-resume"]
    died = run_cli(command(args, crash_in_checkpoint=7))  # mid-epoch 2
    assert died.returncode == -signal.SIGKILL, died.stderr
    done = run_cli(args)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    assert_same_run(run, baseline)
    other = run_cli([*args, "--set", "hidden=[24,8]"])
    assert other.returncode != 0
    assert "--auto-resume cannot change hidden" in other.stderr
    both = run_cli([*args, "--overwrite"])
    assert both.returncode != 0 and "--overwrite" in both.stderr


def test_auto_resume_restarts_a_run_killed_before_its_first_checkpoint(prepared, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("epochs: 4\n")  # what train_run writes first
    (run / "dataset.json").write_text("{}")
    (run / "checkpoints").mkdir()
    command = [*train_args(prepared, run, *CKPT), "--auto-resume"]
    done = run_cli(command)
    assert done.returncode == 0, done.stderr
    assert "resuming" not in done.stdout and len(curve(run)) == 4
    finished = tmp_path / "finished"  # a finished run without checkpoints is not replaced
    shutil.copytree(run, finished)
    shutil.rmtree(finished / "checkpoints")
    again = run_cli([*train_args(prepared, finished, *CKPT), "--auto-resume"])
    assert again.returncode != 0 and "not empty" in again.stderr
