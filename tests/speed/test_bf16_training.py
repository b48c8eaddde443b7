"""bf16 training stays close to fp32, and every compute/precision pair trains end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deeprec.data.sparse import CSRMatrix
from deeprec.train.config import TrainConfig
from deeprec.train.trainer import OrientedData, Trainer, build_model

# Stated tolerance: after one epoch, bf16 training and validation RMSE are within this of
# fp32's (bf16 keeps 8 mantissa bits in the GEMMs; the fp32 masters keep the updates exact).
BF16_RMSE_TOLERANCE = 0.02


def low_rank_data(seed: int = 0, users: int = 320, items: int = 150) -> OrientedData:
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=(users, 3)), rng.normal(size=(items, 3))
    full = np.clip(np.round(3 + u @ v.T * 0.8), 1, 5)
    mask = rng.random((users, items)) < 0.12
    rows, cols = np.nonzero(mask)
    held = rng.random(rows.shape[0]) < 0.15
    vals = full[rows, cols].astype(np.float32)

    def csr(sel):
        return CSRMatrix.from_coo(rows[sel], cols[sel], vals[sel], (users, items))

    return OrientedData(train=csr(~held), valid=csr(held), test=csr(held))


def train_once(
    data: OrientedData, device: torch.device | str = "cpu", **overrides
) -> tuple[float, float]:
    values = dict(
        hidden=[64, 32],
        dropout=0.2,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        batch_size=32,
        epochs=1,
        seed=5,
    )
    values.update(overrides)
    config = TrainConfig(**values)
    torch.manual_seed(config.seed)
    model = build_model(config, data.train.shape[1]).to(device)
    result = Trainer(model, config, data, rating_range=(1.0, 5.0)).fit()
    record = result.history[-1]
    assert math.isfinite(record.train_rmse)
    assert next(model.parameters()).device.type == torch.device(device).type
    return record.train_rmse, record.valid_rmse


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("refeed", [0, 1])
def test_bf16_within_tolerance_of_fp32_over_one_epoch(refeed: int, constrained: bool) -> None:
    """Tied decoders too: their weight gets two gradient terms, kept in fp32."""
    data = low_rank_data()
    kw = {"refeed_steps": refeed, "constrained": constrained}
    fp32 = train_once(data, compute="fast", precision="fp32", **kw)
    bf16 = train_once(data, compute="fast", precision="bf16", **kw)
    assert abs(bf16[0] - fp32[0]) < BF16_RMSE_TOLERANCE
    assert abs(bf16[1] - fp32[1]) < BF16_RMSE_TOLERANCE
    assert bf16 != fp32  # bf16 really ran in lower precision


def test_fast_and_reference_trainers_agree_in_fp32() -> None:
    data = low_rank_data(1)
    ref = train_once(data, compute="reference")
    fast = train_once(data, compute="fast")
    assert fast == pytest.approx(ref, abs=1e-4)


def test_reference_bf16_autocast_runs() -> None:
    data = low_rank_data(2)
    ref32 = train_once(data, compute="reference")
    ref16 = train_once(data, compute="reference", precision="bf16")
    assert abs(ref16[1] - ref32[1]) < BF16_RMSE_TOLERANCE
