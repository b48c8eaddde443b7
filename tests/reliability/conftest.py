"""Shared pieces of the reliability tests: a small synthetic prepared dataset, a training
config that exercises every piece of state (Adam moments, a LR schedule, dropout RNG,
re-feeding), and helpers to run the CLI as a subprocess and compare runs bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from deeprec.data.dataset import PreparedDataset

SRC = Path(__file__).resolve().parents[2] / "src"

# 150 users x 40 items; batch 16 -> 10 batches per epoch.
SETTINGS = [
    "epochs=4",
    "hidden=[24,12]",
    "batch_size=16",
    "dropout=0.3",
    "input_dropout=0.1",
    "refeed_steps=1",
    "optimizer=adam",
    "lr=0.003",
    "lr_schedule=multistep",
    "lr_milestones=[2,3]",
    "threads=1",
    "eval_batch_size=64",
]


def make_dataset(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    n_users, n_items = 150, 40
    users = np.repeat(np.arange(n_users), 12)
    items = np.concatenate([rng.choice(n_items, 12, replace=False) for _ in range(n_users)])
    ratings = rng.integers(1, 6, users.shape[0]).astype(np.float32)
    frame = pd.DataFrame({"user": users, "item": items, "rating": ratings})
    held = rng.random(frame.shape[0]) < 0.2
    valid = frame[held]
    return PreparedDataset.from_tables(frame[~held], valid.iloc[::2], valid.iloc[1::2]).save(path)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "prepared")


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def train_args(data: Path, out: Path, *settings: str) -> list[str]:
    args = [sys.executable, "-m", "deeprec", "train", "--data", str(data), "--out", str(out)]
    for item in (*SETTINGS, *settings):
        args += ["--set", item]
    return [*args, "--quiet"]


def resume_args(run: Path, *settings: str) -> list[str]:
    args = [sys.executable, "-m", "deeprec", "train", "--resume", str(run), "--quiet"]
    for item in settings:
        args += ["--set", item]
    return args


def run_cli(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, env=cli_env(**env), capture_output=True, text=True, timeout=120, check=False
    )


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended first: {proc.returncode}\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def best_weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(run / "best" / "weights.safetensors").items()}


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), f"{name} differs"


def final_state(run: Path) -> dict[str, torch.Tensor]:
    """Model and optimizer tensors of the run's newest checkpoint (the end of training)."""
    from deeprec.train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run / "checkpoints")
    return {
        k: v for k, v in ckpt.tensors.items() if k.startswith(("model/", "optimizer/", "best/"))
    }


def curve(run: Path) -> list[tuple]:
    from deeprec.runs.directory import RunDir

    return [
        (r["epoch"], r["train_rmse"], r["valid_rmse"], r["lr"]) for r in RunDir(run).read_metrics()
    ]


def assert_nothing_truncated(run: Path) -> int:
    """Every non-temporary file the run wrote loads; returns how many files were checked."""
    import json

    from deeprec.base import load_model
    from deeprec.train.checkpoint import list_checkpoints, read_checkpoint

    checked = 0
    for path in list_checkpoints(run / "checkpoints"):
        read_checkpoint(path)  # verifies the sha256 of every tensor
        checked += 1
    if (run / "best").exists():
        load_model(run / "best")
        checked += 1
    for name in ("config.yaml", "dataset.json", "summary.json"):
        if (run / name).exists():
            text = (run / name).read_text()
            assert text.strip(), name
            if name.endswith(".json"):
                json.loads(text)
            checked += 1
    for line in (
        (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
    ):
        json.loads(line)
    return checked


@pytest.fixture(scope="package", autouse=True)
def _no_curve_plots():
    """In-process trainings here skip redrawing curves.png (matplotlib, ~0.3 s per epoch on
    the shared machine): plots have nothing to do with what these tests check, and CLI
    subprocess runs still draw them."""
    from deeprec.runs.directory import RunDir

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunDir, "plot_curves", lambda self: None)
        yield
