"""The CUDA path: the fast step, evaluation, the estimator and torchrun on a GPU.

Skipped without a CUDA GPU (CI has none). Run on a GPU machine with
`python -m pytest tests/gpu -q`; results of the last such run are in
docs/results/cuda_check.md.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from deeprec.data.batching import row_batch
from deeprec.estimator import DeepRec
from deeprec.kernels import mirrored_sgd, refeed_loss
from deeprec.step.fast import FastStep
from deeprec.step.planner import Planner
from deeprec.train.config import TrainConfig
from deeprec.train.evaluation import evaluate_sse
from deeprec.train.trainer import build_model
from speed.test_bf16_training import BF16_RMSE_TOLERANCE, low_rank_data, train_once
from speed.test_fast_equivalence import assert_same, make_models, random_matrix, run_both

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU = torch.device("cuda", 0)


def _run_both_on_gpu(ref, fast, batch, **kw):
    return run_both(ref, fast, batch, momentum=0.9, device=GPU, **kw)


def _assert_same(ref, fast, r, f) -> None:
    assert all(p.device.type == "cuda" for p in fast.parameters())
    assert_same(ref, fast, r, f)


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("strategy", ["dense", "sparse", "union", "gather"])
@pytest.mark.parametrize("input_strategy", ["dense", "sparse"])
def test_fast_matches_reference_on_the_gpu(constrained, strategy, input_strategy) -> None:
    batch = row_batch(random_matrix(0), np.array([3, 0, 7, 11, 5, 2, 19, 23]))
    ref, fast = make_models(constrained)
    r, f = _run_both_on_gpu(
        ref, fast, batch, refeed=0, strategy=strategy, input_strategy=input_strategy
    )
    _assert_same(ref, fast, r, f)


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("placement", ["code", "all"])
def test_dropout_and_refeeding_match_reference_on_the_gpu(constrained, placement) -> None:
    """F.dropout on CUDA is a fused Philox kernel, not bernoulli_: the fast step must draw
    the same noise for the same seed, in the sparse pass and the re-feed pass."""
    batch = row_batch(random_matrix(4), np.arange(20))
    ref, fast = make_models(constrained, dropout=0.5, dropout_placement=placement)
    r, f = _run_both_on_gpu(ref, fast, batch, refeed=1, strategy="sparse", input_strategy="sparse")
    _assert_same(ref, fast, r, f)


def test_planner_chooses_on_the_gpu_as_on_the_cpu() -> None:
    """The auto rule depends on the batch's shape only, not the device it is on."""
    batch = row_batch(random_matrix(5), np.arange(16))
    _, fast = make_models(False)
    cpu_choice = FastStep(fast, torch.optim.SGD(fast.parameters(), lr=0.05)).planner.choose(batch)
    fast = fast.to(GPU)
    step = FastStep(fast, torch.optim.SGD(fast.parameters(), lr=0.05))
    assert isinstance(step.planner, Planner)
    assert step.planner.choose(batch.to(GPU)) == cpu_choice


def test_fused_bf16_update_compiles_for_cuda_and_matches_sgd() -> None:
    gen = torch.Generator(device=GPU).manual_seed(0)
    w = torch.randn(1 << 20, device=GPU, generator=gen)
    m = torch.randn(1 << 20, device=GPU, generator=gen)
    g = torch.randn(1 << 20, device=GPU, generator=gen).to(torch.bfloat16)
    w2, m2 = w.clone(), m.clone()
    low, low2 = torch.empty_like(w, dtype=torch.bfloat16), torch.empty_like(w, dtype=torch.bfloat16)
    mirrored_sgd.sgd_and_copy(w, m, g, low, 0.01, 0.9, 1e-4)
    mirrored_sgd.eager_sgd_and_copy(w2, m2, g, low2, 0.01, 0.9, 1e-4)
    assert not mirrored_sgd.UPDATE_KERNEL.failed  # Triton compiled it
    # one fused multiply-add vs two roundings in `mu * m + d`: as on the CPU, 1e-6
    torch.testing.assert_close(w, w2, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(m, m2, rtol=1e-6, atol=1e-6)
    assert torch.equal(low, w.to(torch.bfloat16))


def test_group_update_and_refeed_gradient_compile_for_cuda(monkeypatch) -> None:
    """The one-call update of two param groups and the fused re-feed loss gradient."""
    gen = torch.Generator(device=GPU).manual_seed(1)
    mats = [torch.randn(64, 32, device=GPU, generator=gen) for _ in range(2)]
    vecs = [torch.randn(64, device=GPU, generator=gen) for _ in range(2)]
    grads = [torch.randn(64, 32, device=GPU, generator=gen).bfloat16() for _ in range(2)]
    vec_grads = [torch.randn(64, device=GPU, generator=gen) for _ in range(2)]
    moms = [torch.zeros_like(t) for t in mats + vecs]
    copies = [torch.empty_like(t, dtype=torch.bfloat16) for t in mats]
    twins = [copy.deepcopy(x) for x in (mats, vecs, moms, copies)]
    groups = [
        mirrored_sgd.Group(
            list(zip(mats, moms[:2], grads, copies, strict=True)), [], 0.01, 0.9, 1e-3
        ),
        mirrored_sgd.Group([], list(zip(vecs, moms[2:], vec_grads, strict=True)), 0.01, 0.9, 0.0),
    ]
    mirrored_sgd.sgd_groups(groups)
    assert not mirrored_sgd.UPDATE_KERNEL.failed
    t_mats, t_vecs, t_moms, t_copies = twins
    mirrored_sgd.eager_sgd_groups(
        [
            mirrored_sgd.Group(
                list(zip(t_mats, t_moms[:2], grads, t_copies, strict=True)), [], 0.01, 0.9, 1e-3
            ),
            mirrored_sgd.Group(
                [], list(zip(t_vecs, t_moms[2:], vec_grads, strict=True)), 0.01, 0.9, 0.0
            ),
        ]
    )
    for a, b in zip(mats + vecs + moms, t_mats + t_vecs + t_moms, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)

    monkeypatch.setattr(refeed_loss, "MIN_COLUMNS", 1)
    product = torch.randn(16, 300, device=GPU, generator=gen).bfloat16()
    bias = torch.randn(300, device=GPU, generator=gen)
    y = torch.randn(16, 300, device=GPU, generator=gen)
    out, bias_grad, g = refeed_loss.refeed_gradient(
        product, bias, y, keep_out=True, low=torch.bfloat16
    )
    assert not refeed_loss.KERNEL.failed
    want = (bias + product.float() - y) * (2.0 / y.numel())
    torch.testing.assert_close(out, bias + product.float())
    torch.testing.assert_close(bias_grad, want.sum(0), rtol=1e-5, atol=1e-6)
    assert g.dtype == torch.bfloat16  # the fp32 values rounded once (up to a fused multiply-add)
    torch.testing.assert_close(g.float(), want, rtol=1e-2, atol=1e-4)


def _train_on(device: torch.device, data, **overrides) -> tuple[float, float]:
    return train_once(data, device, **{"epochs": 2, **overrides})


@pytest.mark.parametrize("refeed", [0, 1])
def test_gpu_training_matches_cpu_training_without_dropout(refeed: int) -> None:
    """With no random draws the same seed gives the same model on either device, up to the
    devices' float rounding (different GEMM kernels, fp32)."""
    data = low_rank_data(3)
    for compute in ("fast", "reference"):
        cpu = _train_on(
            torch.device("cpu"), data, compute=compute, dropout=0.0, refeed_steps=refeed
        )
        gpu = _train_on(GPU, data, compute=compute, dropout=0.0, refeed_steps=refeed)
        assert gpu == pytest.approx(cpu, abs=2e-3), compute


@pytest.mark.parametrize("refeed", [0, 1])
def test_gpu_bf16_within_tolerance_of_gpu_fp32(refeed: int) -> None:
    data = low_rank_data()
    """As tests/speed/test_bf16_training.py states it for the CPU: one epoch, same tolerance."""
    runs = {}
    for compute in ("fast", "reference"):
        for precision in ("fp32", "bf16"):
            runs[compute, precision] = _train_on(
                GPU, data, compute=compute, precision=precision, refeed_steps=refeed, epochs=1
            )
    for compute in ("fast", "reference"):
        fp32, bf16 = runs[compute, "fp32"], runs[compute, "bf16"]
        assert abs(bf16[0] - fp32[0]) < BF16_RMSE_TOLERANCE, compute
        assert abs(bf16[1] - fp32[1]) < BF16_RMSE_TOLERANCE, compute
        assert bf16 != fp32  # bf16 really ran in lower precision


def test_evaluation_on_the_gpu_matches_the_cpu() -> None:
    data = low_rank_data(4)
    torch.manual_seed(0)
    model = build_model(TrainConfig(hidden=[32, 16], dropout=0.5), data.train.shape[1])
    model.eval()
    on_cpu = evaluate_sse(model, data.train, data.valid, clip=(1.0, 5.0))
    for compute in ("fast", "reference"):
        on_gpu = evaluate_sse(
            copy.deepcopy(model).to(GPU), data.train, data.valid, clip=(1.0, 5.0), compute=compute
        )
        assert on_gpu[2] == on_cpu[2]
        assert on_gpu[0] == pytest.approx(on_cpu[0], rel=1e-4)


def _ratings_frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    users, items = 150, 60
    u, v = rng.normal(size=(users, 3)), rng.normal(size=(items, 3))
    records = []
    for user in range(users):
        for item in rng.choice(items, size=12, replace=False):
            records.append(
                (f"u{user}", f"i{item}", float(np.clip(np.round(3 + u[user] @ v[item]), 1, 5)))
            )
    return pd.DataFrame(records, columns=["user", "item", "rating"])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_estimator_fits_on_the_gpu_and_serves_from_the_cpu(tmp_path, precision: str) -> None:
    frame = _ratings_frame()
    model = DeepRec(device="cuda", hidden=[32, 16], epochs=3, precision=precision, seed=1)
    model.fit(frame)
    assert next(model.module_.parameters()).device.type == "cpu"  # fitted models serve on CPU
    head = frame.head(20)
    predictions = model.predict(head["user"], head["item"])
    assert np.all(np.isfinite(predictions))
    assert model.score(frame)["rmse"] < 1.5
    path = tmp_path / "model"
    model.save(path)
    loaded = DeepRec.load(path)
    np.testing.assert_allclose(loaded.predict(head["user"], head["item"]), predictions, rtol=1e-6)
    assert len(model.recommend("u0", k=5)) == 5


@pytest.mark.parametrize("compute", ["fast", "reference"])
def test_torchrun_with_nccl_on_one_gpu(tmp_path, compute: str) -> None:
    """`torchrun -m deeprec train --device cuda`: NCCL process group, one rank per GPU."""
    data = tmp_path / "data"
    from deeprec.data.dataset import PreparedDataset

    frame = _ratings_frame(1)
    held = np.random.default_rng(0).random(len(frame)) < 0.2
    PreparedDataset.from_tables(frame[~held], frame[held]).save(data)
    out = tmp_path / "run"
    env = dict(os.environ, DEEPREC_DIST_TIMEOUT="60")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
        "-m", "deeprec", "train", "--data", str(data), "--out", str(out), "--device", "cuda",
        "--set", f"compute={compute}", "--set", "epochs=2", "--set", "hidden=[16,8]",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2
    assert all(math.isfinite(m["valid_rmse"]) for m in metrics)
