"""fp32 products through oneDNN give torch's values, other dtypes keep torch's own products,
and a fast fp32 step on them keeps the reference math."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch

from deeprec.data.batching import row_batch
from deeprec.kernels import cpu_gemm, disabled

from .fp32_bound import assert_product_close
from .test_fast_equivalence import assert_close_in_fp32, make_models, random_matrix, run_both

needs_onednn = pytest.mark.skipif(
    not cpu_gemm.onednn_available(), reason="this torch build has no working oneDNN linear op"
)


def _tensors(dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 96, generator=gen, dtype=dtype)
    w_rows = torch.randn(2500, 96, generator=gen, dtype=dtype)  # (out, in), contiguous
    w_cols = torch.randn(96, 2500, generator=gen, dtype=dtype).t()  # (out, in), a view
    bias = torch.randn(2500, generator=gen, dtype=dtype)
    return x, w_rows, w_cols, bias


@needs_onednn
def test_linear_and_matmul_match_torch_in_fp32() -> None:
    x, w_rows, w_cols, bias = _tensors()
    for w in (w_rows, w_cols):
        assert_product_close(cpu_gemm.linear(x, w, bias), x, w.t(), bias)
        assert_product_close(cpu_gemm.linear(x, w), x, w.t())
    g = torch.randn(64, 2500, generator=torch.Generator().manual_seed(1))
    for w in (w_rows, w_cols):  # input gradients g @ W (K = 2,500)
        assert_product_close(cpu_gemm.matmul(g, w), g, w)
    empty = cpu_gemm.linear(x[:0], w_rows, bias)
    assert empty.shape == (0, 2500)


def test_other_dtypes_use_torch_products_exactly() -> None:
    x, w_rows, w_cols, bias = _tensors(torch.float64)
    assert torch.equal(cpu_gemm.linear(x, w_rows, bias), torch.addmm(bias, x, w_rows.t()))
    assert torch.equal(cpu_gemm.matmul(x, w_cols.t()), torch.mm(x, w_cols.t()))
    xb, wb = x.to(torch.bfloat16), w_rows.to(torch.bfloat16)
    assert torch.equal(cpu_gemm.linear(xb, wb), torch.mm(xb, wb.t()))


@pytest.mark.parametrize("how", ["unavailable", "switched off"])
def test_without_onednn_products_fall_back_to_torch(monkeypatch, how: str) -> None:
    x, w_rows, _, bias = _tensors()
    if how == "unavailable":
        monkeypatch.setattr(cpu_gemm, "onednn_available", lambda: False)
    with disabled("onednn_linear") if how == "switched off" else nullcontext():
        assert torch.equal(cpu_gemm.linear(x, w_rows, bias), torch.addmm(bias, x, w_rows.t()))
        assert torch.equal(cpu_gemm.linear(x, w_rows), torch.mm(x, w_rows.t()))


@needs_onednn
@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("strategy", ["dense", "sparse"])
def test_fast_fp32_step_through_onednn_matches_reference(
    monkeypatch, constrained: bool, strategy: str
) -> None:
    """fp32 (float64 equivalence tests never reach oneDNN): the same step within fp32
    rounding, with the oneDNN branch really taken."""
    taken = []
    available = cpu_gemm.onednn_available

    def spy() -> bool:
        taken.append(True)
        return available()

    monkeypatch.setattr(cpu_gemm, "onednn_available", spy)
    batch = row_batch(random_matrix(1), np.arange(10))
    ref, fast = (m.float() for m in make_models(constrained))
    r, f = run_both(ref, fast, batch, refeed=1, strategy=strategy, input_strategy="dense")
    assert taken
    assert_close_in_fp32(ref, fast, r, f)
