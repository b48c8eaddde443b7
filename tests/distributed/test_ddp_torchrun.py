"""Data-parallel training launched for real: `torchrun --nproc_per_node=2 -m deeprec train`.

gloo on loopback, OMP_NUM_THREADS=1, tiny synthetic data. Each torchrun launch has a subprocess
timeout as a safety net, and DEEPREC_DIST_TIMEOUT bounds every collective, so a bug shows up as a
failure, never as a hung CI job.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from deeprec.data.batching import row_batch
from deeprec.data.dataset import PreparedDataset
from deeprec.estimator import DeepRec
from deeprec.model.autoencoder import AutoEncoder
from deeprec.runs.training import train_run
from deeprec.step.loss import masked_mse
from deeprec.train.config import TrainConfig
from deeprec.train.distributed import shard_bounds
from fault_injection import torchrun_script

WORKER = Path(__file__).with_name("ddp_worker.py")
COMPUTE = ("reference", "fast")  # autograd through DDP; hand-written gradients + before_update
LAUNCH_TIMEOUT_S = 120  # safety net only; a healthy launch takes a few seconds

# One step: SGD with momentum and a large lr, so that the size of the gradient matters
# (Adam's first step is ~lr*sign(g) and would hide a wrongly weighted gradient).
ONE_STEP = {
    "hidden": [16, 8],
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "dropout": 0.0,
    "refeed_steps": 1,
    "epochs": 1,
    "batch_size": 10_000,  # > users: epoch 1 is exactly one global batch
    "seed": 7,
    "center": "none",  # the hand_grads worker steps on the raw training matrix
    "standardize": False,  # ... as it is
}


def make_dataset(path: Path) -> PreparedDataset:
    """Users with very different numbers of ratings (3..30), so rank slices differ in count."""
    rng = np.random.default_rng(0)
    n_users, n_items = 61, 40
    u = rng.normal(size=(n_users, 3))
    v = rng.normal(size=(n_items, 3))
    records = []
    for user in range(n_users):
        for item in rng.choice(n_items, size=int(rng.integers(4, 31)), replace=False):
            rating = float(np.clip(np.round(3 + u[user] @ v[item]), 1, 5))
            records.append((user, int(item), rating))
    frame = pd.DataFrame(records, columns=["user", "item", "rating"])
    held_out = rng.random(len(frame)) < 0.2
    dataset = PreparedDataset.from_tables(frame[~held_out], frame[held_out])
    dataset.save(path)
    return dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ddp") / "data"
    make_dataset(path)
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sets(config: dict) -> list[str]:
    args = []
    for key, value in config.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    return args


def launch(args: list[str], extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node=2 ARGS` on loopback; retried once on a port clash."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", DEEPREC_DIST_TIMEOUT="60", PYTHONUNBUFFERED="1")
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"
    env.update(extra_env or {})
    for attempt in range(2):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--nnodes=1",
            "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}",
            *args,
        ]
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S
        )
        clash = "address already in use" in (proc.stdout + proc.stderr).lower()
        if not (clash and attempt == 0):
            return proc
    return proc


def torchrun_cli(
    data: Path,
    out: Path,
    config: dict,
    extra_env: dict[str, str] | None = None,
    fail_at: str | None = None,
) -> subprocess.CompletedProcess:
    """`torchrun ... -m deeprec train`: the documented entry point, verbatim; with `fail_at`
    (RANK:STEP[:hang]) through tests/fault_injection.py, which injects that failure."""
    cli = ["-m", "deeprec", "train", "--data", str(data), "--out", str(out), "--quiet"]
    args = [*cli, "--device", "cpu", *_sets(config)]
    return launch(torchrun_script(args, fail_at=fail_at) if fail_at else args, extra_env)


def single_process(data: Path, out: Path, config: dict) -> dict:
    return train_run(data, TrainConfig.from_dict(config), out, progress=False, echo=lambda _: None)


def short_training(data: Path) -> dict:
    """A few epochs with re-feeding and Adam, whose last global batch has ONE row (so rank 1
    trains on a zero-weight padding row there). Dropout 0: only float summation order may
    differ between 1 and 2 ranks."""
    n_rows = int((PreparedDataset.load(data).csr("train").row_lengths() > 0).sum())
    batch = next(b for b in range(8, 30) if n_rows % b == 1)
    return {
        "hidden": [16],
        "dropout": 0.0,
        "refeed_steps": 1,
        "lr": 0.01,
        "epochs": 4,
        "batch_size": batch,
        "seed": 3,
    }


@pytest.fixture(scope="module")
def ddp_runs(data_dir, tmp_path_factory) -> Path:
    """One torchrun job (2 ranks) that trains ONE_STEP into one_step-COMPUTE/ and the short
    training into short-COMPUTE/ for both compute paths, with the code `deeprec train` runs
    (distributed_session + train_run)."""
    root = tmp_path_factory.mktemp("ddp_runs")
    spec = [{"out": str(root / "hand_grads"), "config": ONE_STEP, "kind": "hand_grads"}]
    for compute in COMPUTE:  # DDP comm hook (reference) and before_update (fast)
        spec += [
            {"out": str(root / f"one_step-{compute}"), "config": {**ONE_STEP, "compute": compute}},
            {
                "out": str(root / f"short-{compute}"),
                "config": {**short_training(data_dir), "compute": compute},
            },
        ]
    (root / "spec.json").write_text(json.dumps(spec))
    proc = launch([str(WORKER), str(data_dir), str(root / "spec.json")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (root / "stdout.txt").write_text(proc.stdout)
    return root


def weights(run: Path) -> dict[str, torch.Tensor]:
    return DeepRec.load(run / "best").module.state_dict()


@pytest.mark.parametrize("compute", COMPUTE)
def test_one_two_rank_step_equals_one_single_process_step(ddp_runs, data_dir, tmp_path, compute):
    single_process(data_dir, tmp_path / "one", {**ONE_STEP, "compute": compute})
    two, one = weights(ddp_runs / f"one_step-{compute}"), weights(tmp_path / "one")
    torch.manual_seed(ONE_STEP["seed"])
    start = AutoEncoder(40, ONE_STEP["hidden"]).state_dict()  # the weights before the step
    assert set(two) == set(one)
    moved = 0.0
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-6, msg=name)
        moved = max(moved, float((one[name] - start[name]).abs().max()))
    assert moved > 1e-3  # the step really changed the weights


def test_hand_computed_gradients_summed_by_before_update_match_too(ddp_runs, data_dir, tmp_path):
    """The path for step functions without autograd (compute=fast): gradients on the bare
    model, `DataParallel.before_update` before each optimizer step."""
    single_process(data_dir, tmp_path / "one", ONE_STEP)
    one = weights(tmp_path / "one")
    two = load_file(ddp_runs / "hand_grads" / "weights.safetensors")
    assert set(two) == set(one)
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-6, msg=name)


def test_plain_gradient_averaging_would_not_match(data_dir):
    """Why the loss weights exist: averaging each rank's own masked-MSE gradient (plain DDP)
    differs from the global batch's gradient by far more than the 1e-6 checked above."""
    dataset = PreparedDataset.load(data_dir)
    train = dataset.csr("train")
    rows = np.flatnonzero(train.row_lengths() > 0)
    torch.manual_seed(0)
    model = AutoEncoder(train.shape[1], [16, 8])

    def grads(part: np.ndarray) -> list[torch.Tensor]:
        model.zero_grad()
        x, mask = row_batch(train, part).dense()
        masked_mse(model(x), x, mask).backward()
        return [p.grad.clone() for p in model.parameters()]

    full = grads(rows)
    halves = [grads(rows[slice(*shard_bounds(rows.shape[0], 2, r))]) for r in range(2)]
    gap = max(float(((a + b) / 2 - f).abs().max()) for a, b, f in zip(*halves, full, strict=True))
    assert gap > 1e-4


@pytest.mark.parametrize("compute", COMPUTE)
def test_two_ranks_reach_the_same_validation_rmse(ddp_runs, data_dir, tmp_path, compute):
    """Per-epoch validation (and train) RMSE of 2 ranks equals 1 rank's within 1e-4."""
    config = {**short_training(data_dir), "compute": compute}
    summary = single_process(data_dir, tmp_path / "one", config)

    def metrics(run: Path) -> list[dict]:
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    two, one = metrics(ddp_runs / f"short-{compute}"), metrics(tmp_path / "one")
    assert [r["epoch"] for r in two] == [1, 2, 3, 4]  # rank 0 alone wrote the log
    for a, b in zip(two, one, strict=True):
        assert a["valid_rmse"] == pytest.approx(b["valid_rmse"], abs=1e-4)
        assert a["train_rmse"] == pytest.approx(b["train_rmse"], abs=1e-4)
    assert one[-1]["valid_rmse"] < one[0]["valid_rmse"]  # it did learn something
    ddp_summary = json.loads((ddp_runs / f"short-{compute}" / "summary.json").read_text())
    assert ddp_summary["best_epoch"] == summary["best_epoch"]
    stdout = (ddp_runs / "stdout.txt").read_text()
    assert stdout.count('"best_epoch"') == 2 * len(COMPUTE)  # one per run, from rank 0 only


def test_a_crash_in_one_rank_ends_the_job_with_a_clear_error(data_dir, tmp_path):
    config = {"hidden": [8], "epochs": 3, "batch_size": 8}
    proc = torchrun_cli(data_dir, tmp_path / "run", config, fail_at="1:2")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "error: rank 1: injected failure at step 2" in output
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_hung_rank_ends_the_job_by_the_collective_timeout(data_dir, tmp_path):
    config = {"hidden": [8], "epochs": 3, "batch_size": 8}
    env = {"DEEPREC_DIST_TIMEOUT": "3"}
    proc = torchrun_cli(data_dir, tmp_path / "run", config, env, fail_at="1:2:hang")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "rank 0/2: lost contact with the other ranks" in output
