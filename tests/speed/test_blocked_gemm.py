"""Item-wide fp32 products computed in blocks give one call's values, and the fast step keeps
the reference math when every product is blocked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeprec.data.batching import row_batch
from deeprec.train import blocked_gemm

from .test_fast_equivalence import assert_same, make_models, random_matrix, run_both


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of 8 and float64 included: the test models (37 items) get several blocks."""
    monkeypatch.setattr(blocked_gemm, "BLOCK", 8)
    monkeypatch.setattr(blocked_gemm, "BLOCKED_DTYPES", (torch.float32, torch.float64))


def test_blocked_products_equal_one_call_in_fp32() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(64, 96, generator=gen)
    wide = torch.randn(96, 2500, generator=gen)
    bias = torch.randn(2500, generator=gen)
    out = blocked_gemm.addmm_blocked_columns(bias, a, wide)
    torch.testing.assert_close(out, torch.addmm(bias, a, wide), rtol=1e-5, atol=1e-5)
    tall = torch.randn(2500, 64, generator=gen)
    torch.testing.assert_close(
        blocked_gemm.mm_blocked_rows(tall, a), tall @ a, rtol=1e-5, atol=1e-5
    )
    # transposed views (the shapes the fast step passes) work too
    w_rows = torch.randn(2500, 96, generator=gen)
    torch.testing.assert_close(
        blocked_gemm.addmm_blocked_columns(bias, a, w_rows.t()),
        torch.addmm(bias, a, w_rows.t()),
        rtol=1e-5,
        atol=1e-5,
    )


def test_only_wide_fp32_results_on_the_cpu_are_blocked() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert blocked_gemm.worth_blocking(blocked_gemm.BLOCK + 1, torch.float32, cpu)
    assert not blocked_gemm.worth_blocking(blocked_gemm.BLOCK, torch.float32, cpu)
    assert not blocked_gemm.worth_blocking(10 * blocked_gemm.BLOCK, torch.bfloat16, cpu)
    assert not blocked_gemm.worth_blocking(10 * blocked_gemm.BLOCK, torch.float64, cpu)
    assert not blocked_gemm.worth_blocking(10 * blocked_gemm.BLOCK, torch.float32, gpu)


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("strategy", ["dense", "sparse"])
def test_fast_step_with_blocked_products_matches_reference(
    tiny_blocks, constrained: bool, strategy: str
) -> None:
    batch = row_batch(random_matrix(1), np.arange(10))
    ref, fast = make_models(constrained)
    r, f = run_both(ref, fast, batch, refeed=1, strategy=strategy, input_strategy="dense")
    assert_same(ref, fast, r, f)
