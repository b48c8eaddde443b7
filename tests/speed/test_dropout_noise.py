"""The fast dropout draw gives F.dropout's mask bit for bit and leaves the generator where
F.dropout leaves it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from deeprec.kernels import mt19937_noise
from deeprec.kernels.dropout_noise import dropout_noise


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("drop", [0.8, 0.5, 0.1, 0.37])
def test_noise_equals_f_dropout_draws(dtype: torch.dtype, drop: float) -> None:
    ones = torch.ones(64, 300, dtype=dtype)
    torch.manual_seed(7)
    want = F.dropout(ones, p=drop, training=True)
    after_want = torch.rand(5)
    torch.manual_seed(7)
    got = dropout_noise(ones, drop)
    after_got = torch.rand(5)
    assert got.dtype == dtype
    assert torch.equal(got, want)
    assert torch.equal(after_got, after_want)  # same generator state afterwards
    kept = (got != 0).double().mean().item()
    assert kept == pytest.approx(1 - drop, abs=0.02)


# ---------------------------------------------------------------- vectorised MT19937 draw
SHAPES = [(1,), (623,), (624,), (625,), (1247,), (128, 1024), (128, 512), (3, 5, 7)]
SEEDS = [0, 1234, 2**40 + 17]
ADVANCE = [0, 1, 311, 623, 1000]  # float32 draws before: one MT word each


def _state() -> torch.Tensor:
    return torch.default_generator.get_state()


def _at(seed: int, advance: int) -> None:
    """The default generator seeded, then `advance` words into its stream (mid-block)."""
    torch.manual_seed(seed)
    torch.rand(advance)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(-1).view(torch.uint8)


def _fast_kernel():
    run = mt19937_noise.kernel()
    if run is None:
        pytest.skip("vectorised MT19937 loop not built here (no AVX-512 or no compiler)")
    return run


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("keep", [0.2, 0.5, 0.8, 0.95])
@pytest.mark.parametrize("shape", SHAPES)
def test_fast_draw_is_bernoulli_bit_for_bit(shape, keep: float, dtype: torch.dtype) -> None:
    run = _fast_kernel()
    drop = 1.0 - keep
    for seed in SEEDS:
        for advance in ADVANCE:
            _at(seed, advance)
            want = torch.empty(shape, dtype=dtype).bernoulli_(keep).div_(keep)
            want_state = _state()
            _at(seed, advance)
            via_dropout = F.dropout(torch.ones(shape, dtype=dtype), p=drop, training=True)
            assert torch.equal(_state(), want_state)
            _at(seed, advance)
            got = mt19937_noise.keep_mask(run, shape, dtype, keep)
            assert got is not None
            assert torch.equal(_state(), want_state), (seed, advance)
            assert got.shape == want.shape and got.dtype == dtype
            assert torch.equal(_bits(got), _bits(want)), (seed, advance)
            assert torch.equal(_bits(got), _bits(via_dropout))
            _at(seed, advance)
            assert torch.equal(
                _bits(dropout_noise(torch.empty(shape, dtype=dtype), drop)), _bits(want)
            )
            assert torch.equal(_state(), want_state)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64, torch.float16])
def test_fast_draw_consecutive_calls(dtype: torch.dtype) -> None:
    """Calls in a row (each starting where the last left the generator) mixed with other
    draws, across many twists."""
    _fast_kernel()
    calls = [((128, 1024), 0.8), ((1,), 0.5), ((625,), 0.2), ((3, 5, 7), 0.95), ((128, 512), 0.8)]
    torch.manual_seed(5)
    want = []
    for shape, drop in calls * 2:
        want.append(torch.empty(shape, dtype=dtype).bernoulli_(1.0 - drop).div_(1.0 - drop))
        want.append(torch.rand(3))
    want_state = _state()
    torch.manual_seed(5)
    got = []
    for shape, drop in calls * 2:
        got.append(dropout_noise(torch.empty(shape, dtype=dtype), drop))
        got.append(torch.rand(3))
    assert torch.equal(_state(), want_state)
    for g, w in zip(got, want, strict=True):
        assert torch.equal(_bits(g), _bits(w))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fallback_gives_the_same_mask(monkeypatch, dtype: torch.dtype) -> None:
    _fast_kernel()
    like = torch.empty(128, 300, dtype=dtype)
    _at(11, 311)
    fast = dropout_noise(like, 0.3)
    fast_state = _state()
    monkeypatch.setattr(mt19937_noise, "kernel", lambda: None)
    _at(11, 311)
    slow = dropout_noise(like, 0.3)
    assert torch.equal(_bits(fast), _bits(slow))
    assert torch.equal(_state(), fast_state)


def test_threshold_boundary() -> None:
    """u == keep is dropped, the next double above u keeps it (u < keep, exactly)."""
    run = _fast_kernel()
    _at(3, 7)
    u = torch.rand(4, dtype=torch.float64)
    for i in range(4):
        for keep in (
            u[i].item(),
            math.nextafter(u[i].item(), 1.0),
            math.nextafter(u[i].item(), 0.0),
        ):
            _at(3, 7)
            want = torch.lt(torch.rand(4, dtype=torch.float64), keep).to(torch.float32).div_(keep)
            want_state = _state()
            _at(3, 7)
            got = mt19937_noise.keep_mask(run, (4,), torch.float32, keep)
            assert torch.equal(_bits(got), _bits(want))
            assert torch.equal(_state(), want_state)
            assert (got[i] != 0).item() == (u[i].item() < keep)


@pytest.mark.parametrize("drop", [0.0, -0.5, 1.0 - 2**-53, 1.0])
def test_extreme_drop_matches_torch_path(drop: float) -> None:
    """Keep 1, above 1, 2^-53, and 0 (0 / 0 = NaN: left to torch)."""
    run = _fast_kernel()
    keep = 1.0 - drop
    _at(1, 1)
    before = _state()
    assert (mt19937_noise.keep_mask(run, (9,), torch.float32, keep) is None) == (keep == 0)
    if keep == 0:
        assert torch.equal(_state(), before)
    for dtype in (torch.float32, torch.bfloat16):
        _at(1, 1)
        want = torch.lt(torch.rand(999, dtype=torch.float64), keep).to(dtype).div_(keep)
        want_state = _state()
        _at(1, 1)
        got = dropout_noise(torch.empty(999, dtype=dtype), drop)
        assert torch.equal(_bits(got), _bits(want))
        assert torch.equal(_state(), want_state)


def test_tiny_keep() -> None:
    """keep that rounds to 0 in the dtype's division (0 / keep is NaN: left to torch, nothing
    drawn) or makes 1 / keep overflow (inf: drawn here)."""
    run = _fast_kernel()
    drawn = 0
    for keep in (1e-300, 5e-324, 1e-40, 2e-39, 1e-30):
        for dtype in (torch.float32, torch.bfloat16, torch.float64):
            _at(4, 9)
            want = torch.lt(torch.rand(999, dtype=torch.float64), keep).to(dtype).div_(keep)
            want_state = _state()
            _at(4, 9)
            before = _state()
            got = mt19937_noise.keep_mask(run, (999,), dtype, keep)
            if got is None:
                assert want.isnan().any()
                assert torch.equal(_state(), before)
                continue
            drawn += 1
            assert torch.equal(_bits(got), _bits(want))
            assert torch.equal(_state(), want_state)
    assert drawn >= 8


def test_empty_and_unmodelled_state() -> None:
    run = _fast_kernel()
    _at(2, 5)
    before = _state()
    assert mt19937_noise.keep_mask(run, (0, 4), torch.float32, 0.5).shape == (0, 4)
    assert torch.equal(_state(), before)
    odd = before.clone()
    odd[8:12] = torch.tensor([624], dtype=torch.int32).view(torch.uint8)  # left = 624 ...
    odd[16:24] = torch.tensor([624], dtype=torch.int64).view(torch.uint8)  # ... next = 624
    torch.default_generator.set_state(odd)
    assert mt19937_noise.keep_mask(run, (10,), torch.float32, 0.5) is None  # torch's draw instead
    assert torch.equal(_state(), odd)
