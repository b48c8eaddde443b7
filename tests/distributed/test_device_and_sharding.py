"""Device resolution and the sharding arithmetic of data-parallel training (in-process, fast)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deeprec.cli import main as cli_main
from deeprec.data.batching import row_batch
from deeprec.data.sparse import CSRMatrix
from deeprec.errors import ConfigError
from deeprec.estimator import DeepRec
from deeprec.train.config import TrainConfig
from deeprec.train.distributed import (
    LaunchEnv,
    distributed_session,
    keep_rows,
    padding_batch,
    resolve_device,
    shard_batches,
    shard_bounds,
    timeout_seconds,
)
from fault_injection import parse_fail_at


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


# ------------------------------------------------------------------- devices
def test_cpu_is_cpu_and_auto_falls_back_to_cpu_without_a_gpu(no_gpu):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_without_a_gpu_is_a_clear_config_error(no_gpu):
    with pytest.raises(ConfigError, match="device cuda was requested but no CUDA GPU"):
        resolve_device("cuda")


def test_unknown_device_name_is_a_config_error():
    with pytest.raises(ConfigError, match="device must be one of cpu, cuda, auto"):
        resolve_device("gpu")
    with pytest.raises(ConfigError, match="device must be one of"):
        TrainConfig(device="gpu")


def test_cuda_picks_the_local_rank_gpu_and_refuses_more_ranks_than_gpus(two_gpus, monkeypatch):
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("auto", local_rank=0) == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"--nproc_per_node=2"):
        resolve_device("cuda", local_rank=2)


def test_estimator_with_device_cuda_and_no_gpu_fails_before_training(no_gpu):
    frame = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "rating": [4.0, 3.0, 5.0]})
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        DeepRec(device="cuda", hidden=[4], epochs=1).fit(frame)


def test_cli_device_option_reports_a_missing_gpu(no_gpu, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--device", "cuda"]
        )
    assert exit_info.value.code == 2
    assert "error: device cuda was requested but no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_device_option_rejects_unknown_devices(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--device", "tpu"]
        )
    assert exit_info.value.code == 2
    assert "device must be one of cpu, cuda, auto" in capsys.readouterr().err


def test_estimator_trains_on_auto_device_and_ends_on_cpu(no_gpu):
    frame = pd.DataFrame(
        {"user": [1, 1, 2, 2, 3], "item": [1, 2, 1, 3, 2], "rating": [4.0, 3.0, 5.0, 2.0, 1.0]}
    )
    model = DeepRec(device="auto", hidden=[4], epochs=2, batch_size=2).fit(frame)
    assert next(model.module.parameters()).device == torch.device("cpu")
    assert np.isfinite(model.predict([1, 2], [3, 2])).all()


def test_row_batch_to_same_device_is_itself_and_dense_follows_the_tensors():
    matrix = CSRMatrix.from_coo(np.array([0, 1]), np.array([1, 0]), np.array([3.0, 0.0]), (2, 2))
    batch = row_batch(matrix, np.array([0, 1]))
    assert batch.to("cpu") is batch
    x, mask = batch.dense()
    assert x.device == torch.device("cpu")
    assert mask.tolist() == [[0.0, 1.0], [1.0, 0.0]]  # the 0 rating is observed


def test_row_batch_to_moves_every_tensor_and_builds_dense_there():
    matrix = CSRMatrix.from_coo(np.array([0, 1]), np.array([1, 0]), np.array([3.0, 0.0]), (2, 2))
    batch = row_batch(matrix, np.array([0, 1])).to("meta")  # a device every build has
    assert {batch.local.device.type, batch.cols.device.type, batch.values.device.type} == {"meta"}
    assert all(t.device.type == "meta" for t in batch.dense())
    assert isinstance(batch.rows, np.ndarray)


# -------------------------------------------------------------- launch env
def test_no_torchrun_environment_means_a_single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert LaunchEnv.from_env() is None
    with distributed_session("cpu") as dist:
        assert dist is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    with distributed_session("cpu") as dist:
        assert dist is None


def test_bad_launch_environment_is_a_config_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ConfigError, match="not a valid rank"):
        LaunchEnv.from_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ConfigError, match="RANK must be an integer"):
        LaunchEnv.from_env()


def test_timeout_and_fault_injection_settings_are_validated(monkeypatch):
    monkeypatch.delenv("DEEPREC_DIST_TIMEOUT", raising=False)
    assert timeout_seconds() == 900.0
    monkeypatch.setenv("DEEPREC_DIST_TIMEOUT", "abc")
    with pytest.raises(ConfigError, match="DEEPREC_DIST_TIMEOUT"):
        timeout_seconds()
    assert parse_fail_at("1:3:hang") == (1, 3, "hang")  # the tests' own fault injection
    with pytest.raises(ValueError, match="RANK:STEP"):
        parse_fail_at("1")


# ---------------------------------------------------------------- sharding
@settings(deadline=None)  # timing-free: the CI machine is shared
@given(st.integers(0, 300), st.integers(1, 9))
def test_rank_slices_concatenate_to_the_whole_and_differ_by_at_most_one(n, world):
    bounds = [shard_bounds(n, world, rank) for rank in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1


def _random_matrix(seed: int, n_rows: int = 23, n_cols: int = 7) -> CSRMatrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_rows, n_cols)) < 0.4) * rng.integers(1, 6, (n_rows, n_cols))
    dense[:, 0] = np.where(dense.sum(1) == 0, 3, dense[:, 0])  # every row has a rating
    rows, cols = np.nonzero(dense)
    return CSRMatrix.from_coo(rows, cols, dense[rows, cols], dense.shape)


@settings(deadline=None, max_examples=60)
@given(st.integers(0, 50), st.integers(1, 30), st.integers(1, 5))
def test_rank_batches_rebuild_each_global_batch_with_weights_summing_to_one(seed, batch, world):
    matrix = _random_matrix(seed)
    order = np.random.default_rng(seed).permutation(matrix.shape[0])
    per_rank = [list(shard_batches(matrix, order, batch, r, world)) for r in range(world)]
    n_global = -(-order.shape[0] // batch)
    assert all(len(batches) == n_global for batches in per_rank)  # same number of steps
    for b in range(n_global):
        parts = [per_rank[r][b] for r in range(world)]
        real = [(rb, w) for rb, w in parts if not w.padding]
        rows = np.concatenate([rb.rows for rb, _ in real])
        assert rows.tolist() == order[b * batch : (b + 1) * batch].tolist()
        assert sum(w.sparse for _, w in parts) == pytest.approx(1.0)
        assert sum(w.refeed for _, w in parts) == pytest.approx(1.0)
        for rb, w in parts:
            if w.padding:
                assert rb.values.numel() == 0 and w.sparse == 0.0 and w.refeed == 0.0


def test_padding_batch_has_one_row_and_no_ratings():
    matrix = _random_matrix(0)
    batch = padding_batch(matrix, np.array([5, 6]))
    x, mask = batch.dense()
    assert x.shape == (1, matrix.shape[1]) and float(mask.sum()) == 0.0


def test_keep_rows_keeps_exactly_the_given_rows():
    matrix = _random_matrix(1)
    kept = keep_rows(matrix, np.array([2, 5, 11]))
    assert kept.shape == matrix.shape
    lengths = kept.row_lengths()
    assert set(np.flatnonzero(lengths).tolist()) == {2, 5, 11}
    for row in (2, 5, 11):
        a = slice(kept.indptr[row], kept.indptr[row + 1])
        b = slice(matrix.indptr[row], matrix.indptr[row + 1])
        assert kept.indices[a].tolist() == matrix.indices[b].tolist()
        assert kept.values[a].tolist() == matrix.values[b].tolist()
