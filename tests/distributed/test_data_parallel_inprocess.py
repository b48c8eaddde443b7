"""The DataParallel plumbing in-process, on a one-rank gloo group (no torchrun, fast)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.distributed as dist

from deeprec.data.sparse import CSRMatrix
from deeprec.errors import TrainingError
from deeprec.train.config import TrainConfig
from deeprec.train.distributed import DataParallel, DistContext, row_batch
from deeprec.train.trainer import OrientedData, Trainer, build_model


@pytest.fixture
def one_rank_group():
    if dist.is_initialized():
        pytest.skip("a process group is already running in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield DistContext(rank=0, world_size=1, device=torch.device("cpu"))
    finally:
        dist.destroy_process_group()


def _data(seed: int = 0) -> OrientedData:
    rng = np.random.default_rng(seed)
    dense = (rng.random((30, 12)) < 0.5) * rng.integers(1, 6, (30, 12))
    dense[:, 0] = np.where(dense.sum(1) == 0, 4, dense[:, 0])
    held = rng.random(dense.shape) < 0.2

    def csr(values: np.ndarray) -> CSRMatrix:
        rows, cols = np.nonzero(values)
        return CSRMatrix.from_coo(rows, cols, values[rows, cols], values.shape)

    return OrientedData(train=csr(dense * ~held), valid=csr(dense * held), test=csr(dense * 0))


def _train(config: TrainConfig, dist_ctx: DistContext | None):
    torch.manual_seed(config.seed)
    data = _data()
    model = build_model(config, data.train.shape[1])
    result = Trainer(model, config, data, dist=dist_ctx).fit()
    return model.state_dict(), result


def test_one_rank_ddp_training_equals_plain_training(one_rank_group):
    """Hook, sharding, weights, reduced metrics and sharded validation on one rank change
    nothing: same weights and the same history as without DDP (dropout 0)."""
    config = TrainConfig(
        hidden=[8], dropout=0.0, refeed_steps=1, epochs=3, batch_size=7, optimizer="sgd", lr=0.005
    )
    plain, plain_result = _train(config, None)
    ddp, ddp_result = _train(config, one_rank_group)
    for name in plain:
        torch.testing.assert_close(ddp[name], plain[name], rtol=0, atol=1e-6)
    for a, b in zip(ddp_result.history, plain_result.history, strict=True):
        assert a.valid_rmse == pytest.approx(b.valid_rmse, abs=1e-9)
        assert a.train_rmse == pytest.approx(b.train_rmse, abs=1e-9)


def test_a_step_on_a_batch_not_from_batches_is_refused(one_rank_group):
    data = _data()
    parallel = DataParallel(build_model(TrainConfig(hidden=[4]), 12), one_rank_group, seed=0)
    with pytest.raises(TrainingError, match="not produced by batches"):
        parallel.begin_step(row_batch(data.train, np.array([0, 1])))


@dataclasses.dataclass(frozen=True)
class _OtherRankDiffers(DistContext):
    """Pretends a second rank whose weights sum to something else joined the MAX reduction."""

    offset: float = 1.0

    def all_reduce(self, values, op=dist.ReduceOp.SUM):
        half = len(values) // 2
        other = [v + self.offset for v in values[:half]]
        other += [-v for v in other]
        return [max(a, b) for a, b in zip(values, other, strict=True)]


def test_diverged_replicas_are_detected(one_rank_group):
    parallel = DataParallel(build_model(TrainConfig(hidden=[4]), 12), one_rank_group, seed=0)
    parallel.check_replicas()  # one rank always agrees with itself
    parallel.ctx = _OtherRankDiffers(rank=0, world_size=2, device=torch.device("cpu"))
    with pytest.raises(TrainingError, match="replicas' weights differ"):
        parallel.check_replicas()
