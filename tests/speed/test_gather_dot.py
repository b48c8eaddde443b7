"""The compiled observed-entry output layer equals the dense product picked at the ratings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeprec.data.batching import row_batch
from deeprec.kernels import gather_dot

from .batches import random_batch
from .fp32_bound import assert_within_bound, product_bound
from .test_fast_equivalence import (
    assert_close_in_fp32,
    assert_same,
    make_models,
    random_matrix,
    run_both,
)


@pytest.fixture(autouse=True)
def compile_every_size(monkeypatch, fresh_compiled_kernels):
    """Tiny test weights would run the eager form (MIN_WEIGHTS): compile them too."""
    monkeypatch.setattr(gather_dot, "MIN_WEIGHTS", 1)


def _inputs(dtype: torch.dtype, weight_dtype: torch.dtype | None = None):
    batch = random_batch(12, 50, seed=3)
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(50, 16, generator=gen, dtype=torch.float64).to(weight_dtype or dtype)
    h = torch.randn(12, 16, generator=gen, dtype=torch.float64).to(dtype)
    bias = torch.randn(50, generator=gen, dtype=torch.float64).to(dtype)
    return batch, w, h, bias


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_observed_outputs_equal_the_dense_product_at_the_ratings(dtype) -> None:
    batch, w, h, bias = _inputs(dtype)
    dense = torch.addmm(bias, h, w.t())[batch.local, batch.cols]
    got = gather_dot.observed_outputs(w, h, batch.cols, batch.local, bias)
    assert got.dtype == dtype
    if dtype == torch.float64:
        torch.testing.assert_close(got, dense, rtol=1e-12, atol=1e-12)
    else:
        bound = product_bound(h, w.t(), bias)[batch.local, batch.cols]
        exact = torch.addmm(bias.double(), h.double(), w.double().t())[batch.local, batch.cols]
        assert_within_bound(got, exact, bound)


def test_a_bf16_weight_copy_is_accumulated_in_fp32() -> None:
    batch, w, h, bias = _inputs(torch.float32, torch.bfloat16)
    wf = w.float()  # bf16 values, widened exactly
    exact = torch.addmm(bias.double(), h.double(), wf.double().t())[batch.local, batch.cols]
    got = gather_dot.observed_outputs(w, h, batch.cols, batch.local, bias)
    assert got.dtype == torch.float32  # no bf16 rounding of sums: within the fp32 bound
    assert_within_bound(got, exact, product_bound(h, wf.t(), bias)[batch.local, batch.cols])


def test_a_failed_compile_falls_back_to_the_same_values(monkeypatch) -> None:
    def broken():
        raise RuntimeError("no C++ compiler")

    batch, w, h, bias = _inputs(torch.float64)
    expected = gather_dot.observed_outputs(w, h, batch.cols, batch.local, bias)
    monkeypatch.setattr(gather_dot.KERNEL, "compiled", broken)
    monkeypatch.setattr(gather_dot.KERNEL, "failed", False)
    monkeypatch.setattr(gather_dot, "native_kernel", lambda: None)  # no compiler at all
    got = gather_dot.observed_outputs(w, h, batch.cols, batch.local, bias)
    assert gather_dot.KERNEL.failed and not gather_dot.compiled_for(w)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_small_output_layers_stay_eager(monkeypatch) -> None:
    monkeypatch.setattr(gather_dot, "MIN_WEIGHTS", 1 << 20)
    assert not gather_dot.compiled_for(torch.zeros(1000, 512))
    assert gather_dot.compiled_for(torch.zeros(2048, 512))


@pytest.mark.parametrize("constrained", [False, True])
def test_fast_step_with_the_compiled_gather_matches_reference(constrained: bool) -> None:
    """The step-level float64 check of tests/speed/test_fast_equivalence.py, compiled."""
    batch = row_batch(random_matrix(0), np.array([3, 0, 7, 11, 5, 2, 19, 23]))
    ref, fast = make_models(constrained)
    r, f = run_both(ref, fast, batch, refeed=0, strategy="gather")
    assert_same(ref, fast, r, f)


def _native_or_skip():
    run = gather_dot.native_kernel()
    if run is None:
        pytest.skip("no AVX-512 or no C++ compiler: the native loop is not built here")
    return run


@pytest.mark.parametrize("width", [1, 16, 37, 64, 100, 512])
@pytest.mark.parametrize("weight_dtype", [torch.float32, torch.bfloat16])
def test_the_native_loop_equals_the_dense_product_at_the_ratings(width, weight_dtype) -> None:
    """Every width (full 64-blocks, 16-lane tails, masked remainders), fp32 or bf16 weights
    (widened exactly, summed in fp32)."""
    _native_or_skip()
    batch = random_batch(40, 300, seed=width)
    gen = torch.Generator().manual_seed(width)
    w = torch.randn(300, width, generator=gen).to(weight_dtype)
    h = torch.randn(40, width, generator=gen)
    bias = torch.randn(300, generator=gen)
    assert gather_dot.native_supports(w, h, batch.cols, batch.local, bias)
    want = torch.addmm(bias.double(), h.double(), w.double().t())[batch.local, batch.cols]
    got = gather_dot.observed_outputs(w, h, batch.cols, batch.local, bias)
    assert got.dtype == torch.float32 and got.shape == (batch.nnz,)
    bound = product_bound(h, w.float().t(), bias)[batch.local, batch.cols]
    assert_within_bound(got, want, bound)


def test_the_native_loop_handles_no_ratings() -> None:
    _native_or_skip()
    w, h, bias = torch.randn(50, 16), torch.randn(4, 16), torch.randn(50)
    none = torch.zeros(0, dtype=torch.int64)
    assert gather_dot.observed_outputs(w, h, none, none, bias).shape == (0,)


def test_inputs_the_native_loop_cannot_take_go_to_the_compiled_one(monkeypatch) -> None:
    batch, w, h, bias = _inputs(torch.float32)
    assert not gather_dot.native_supports(w.double(), h.double(), batch.cols, batch.local, bias)
    assert not gather_dot.native_supports(w.t(), h, batch.cols, batch.local, bias)  # strided
    assert not gather_dot.native_supports(w, h, batch.cols.int(), batch.local, bias)
    expected = gather_dot.observed_outputs(w, h, batch.cols, batch.local, bias)
    monkeypatch.setattr(gather_dot, "native_kernel", lambda: None)  # no AVX-512 / compiler
    got = gather_dot.observed_outputs(w, h, batch.cols, batch.local, bias)
    assert_within_bound(got, expected, product_bound(h, w.t(), bias)[batch.local, batch.cols])


@pytest.mark.parametrize("constrained", [False, True])
def test_fast_fp32_step_through_the_native_loop_matches_reference(monkeypatch, constrained):
    """fp32 (the float64 step tests never reach the native loop): the same step within fp32
    rounding, with the loop really taken."""
    run = _native_or_skip()
    calls = []

    def spy(*args):
        calls.append(True)
        return run(*args)

    monkeypatch.setattr(gather_dot, "native_kernel", lambda: spy)
    batch = row_batch(random_matrix(1), np.arange(10))
    ref, fast = (m.float() for m in make_models(constrained))
    r, f = run_both(ref, fast, batch, refeed=0, strategy="gather")
    assert calls
    assert_close_in_fp32(ref, fast, r, f)
