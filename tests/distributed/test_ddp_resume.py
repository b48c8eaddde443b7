"""`deeprec train --resume` under torchrun: a 2-rank run that lost a rank mid-epoch continues
bit for bit, and a resume with another number of processes continues (not bit for bit).

Dropout 0.5, so every rank's own dropout stream must come back; the output and input
strategies are the defaults (a cost model of each batch's shape, the same in every
process); time-based checkpoints every few milliseconds, so the ranks must agree on rank
0's clock.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from deeprec.estimator import DeepRec
from deeprec.runs.training import resume_run, train_run
from deeprec.train.checkpoint import latest_checkpoint, list_checkpoints, read_checkpoint
from deeprec.train.config import TrainConfig
from fault_injection import torchrun_script

from .test_ddp_torchrun import _sets, launch, make_dataset, torchrun_cli

CONFIG = {
    "hidden": [16, 8],
    "dropout": 0.5,
    "refeed_steps": 1,
    "lr": 0.01,
    "epochs": 3,
    "batch_size": 8,  # 8 global batches per epoch, the last one short
    "seed": 5,
    "checkpoint_every_batches": 3,
    "checkpoint_every_minutes": 0.00001,  # 0.6 ms: time-based checkpoints at rank 0's pace
    "checkpoint_keep": 50,
}
CRASH = "1:13"  # rank 1 fails at global batch 5 of epoch 2 (tests/fault_injection.py)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """An uninterrupted 2-rank run, and the same run crashed by rank 1 mid-epoch (resumed
    by the tests, each on its own copy)."""
    root = tmp_path_factory.mktemp("ddp_resume")
    data = root / "data"
    make_dataset(data)
    full = torchrun_cli(data, root / "full", CONFIG)
    assert full.returncode == 0, full.stdout + full.stderr
    crashed = torchrun_cli(data, root / "crashed", CONFIG, fail_at=CRASH)
    assert crashed.returncode != 0
    assert "injected failure at step 13" in crashed.stdout + crashed.stderr
    return {"data": data, "full": root / "full", "crashed": root / "crashed"}


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [
        {k: v for k, v in json.loads(line).items() if not k.endswith("seconds")} for line in lines
    ]


def best_weights(run: Path) -> dict[str, torch.Tensor]:
    return DeepRec.load(run / "best").module.state_dict()


def test_two_ranks_write_every_rank_state_into_one_checkpoint(runs):
    folder = runs["full"] / "checkpoints"
    ckpt = read_checkpoint(folder / "ckpt-e000002-b00000003.safetensors")  # by count
    assert ckpt.state["world_size"] == 2
    (peer,) = ckpt.state["peers"]
    assert set(peer) == {"rng", "sse", "count"}
    assert peer["count"] > 0  # rank 1's own share of the epoch's ratings
    # the ranks draw their own dropout: rank 1's generator state is not rank 0's
    mine, theirs = ckpt.tensors["rng/torch"], ckpt.tensors["peers/1/rng/torch"]
    assert not torch.equal(mine, theirs)
    # the ranks' running SSE: rank 0 keeps its own, rank 1's is its own share
    assert ckpt.state["position"]["count"] > 0
    # more checkpoints than by count alone (3 epochs x 2 + 4 at epoch ends): by time too
    assert len(list_checkpoints(folder)) > 3 * 2 + 4


def test_resume_under_torchrun_after_a_rank_crash_continues_bit_for_bit(runs, tmp_path):
    run = copy_run(runs["crashed"], tmp_path / "run")
    position = latest_checkpoint(run / "checkpoints").state["position"]
    assert (position["epoch"], position["batch"] > 0) == (2, True)  # resumes mid-epoch 2
    proc = launch(["-m", "deeprec", "train", "--resume", str(run), "--quiet"])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert output.count("resuming") == 1  # rank 0 speaks for the job
    assert "not bit for bit" not in output
    assert metrics(run) == metrics(runs["full"])
    full, resumed = best_weights(runs["full"]), best_weights(run)
    assert set(full) == set(resumed)
    for name in full:
        assert torch.equal(full[name], resumed[name]), name
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 3


def test_resume_with_one_process_continues_the_two_rank_run_and_says_it_differs(runs, tmp_path):
    run = copy_run(runs["crashed"], tmp_path / "run")
    said: list[str] = []
    summary = resume_run(run, progress=False, echo=said.append)
    assert any("written by 2 process(es) and is resumed by 1" in line for line in said)
    assert summary["epochs_run"] == 3
    done = metrics(run)
    assert [r["epoch"] for r in done] == [1, 2, 3]
    assert done[0] == metrics(runs["full"])[0]  # epoch 1 was done before the crash
    for name, tensor in best_weights(run).items():
        assert torch.isfinite(tensor).all(), name


def test_a_single_process_run_resumes_under_torchrun_with_two_ranks(runs, tmp_path):
    config = TrainConfig.from_dict({**CONFIG, "epochs": 1})
    train_run(runs["data"], config, tmp_path / "run", progress=False, echo=lambda _m: None)
    proc = launch(
        ["-m", "deeprec", "train", "--resume", str(tmp_path / "run"), "--set", "epochs=2"]
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "written by 1 process(es) and is resumed by 2" in output
    assert [r["epoch"] for r in metrics(tmp_path / "run")] == [1, 2]
    ckpt = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert ckpt.state["world_size"] == 2 and ckpt.epoch == 3


def test_torchrun_max_restarts_with_auto_resume_recovers_bit_for_bit(runs, tmp_path):
    """torchrun restarts every worker after rank 1 fails (the injected failure fires in the
    first attempt only); the rerun command continues from the last checkpoint. The restarted
    attempt joins under its own store prefix (distributed._rendezvous): without it, a
    restarted rank read the dead attempt's gloo address and failed to connect."""
    run = tmp_path / "run"
    train = ["-m", "deeprec", "train", "--data", str(runs["data"]), "--out", str(run)]
    args = ["--max-restarts=1", *train, "--quiet", "--device", "cpu", "--auto-resume"]
    proc = launch(torchrun_script([*args, *_sets(CONFIG)], fail_at=CRASH))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "injected failure at step 13" in output
    assert output.count("resuming") == 1
    assert metrics(run) == metrics(runs["full"])
    full, resumed = best_weights(runs["full"]), best_weights(run)
    for name in full:
        assert torch.equal(full[name], resumed[name]), name
