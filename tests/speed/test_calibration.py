"""The one-off strategy probes: cold caches for models larger than the cache, cached rates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deeprec.train.fast_step as fast_step
from deeprec.data.batching import row_batch
from deeprec.data.sparse import CSRMatrix
from deeprec.model.autoencoder import AutoEncoder
from deeprec.train import gather_dot
from deeprec.train.fast_step import FastNet, Planner

from .batches import random_batch


def small_batch():
    return random_batch(16, 40, seed=0)


def test_cache_size_is_read_or_defaulted():
    assert fast_step._last_level_cache_bytes() >= 1 << 20


def test_probes_evict_only_when_the_weights_exceed_the_cache(monkeypatch):
    torch.manual_seed(0)
    net = FastNet(AutoEncoder(40, [8, 6]))
    weight_bytes = sum(p.numel() * p.element_size() for p in net._params)
    monkeypatch.setattr(fast_step, "_last_level_cache_bytes", lambda: weight_bytes)
    assert fast_step._cache_evictor(net).__closure__ is None  # fits: a no-op
    monkeypatch.setattr(fast_step, "_last_level_cache_bytes", lambda: weight_bytes // 2)
    evict = fast_step._cache_evictor(net)
    (scratch,) = (c.cell_contents for c in evict.__closure__)
    assert scratch.numel() * 4 >= 2 * (weight_bytes // 2)
    evict()
    evict()
    assert bool((scratch == 2).all())  # every element touched on every call


def test_rates_are_cached_per_process_so_seeded_runs_choose_alike(monkeypatch):
    monkeypatch.delenv("DEEPREC_OUTPUT_STRATEGY", raising=False)
    monkeypatch.delenv("DEEPREC_INPUT_STRATEGY", raising=False)
    torch.manual_seed(0)
    batch = small_batch()
    first = Planner(FastNet(AutoEncoder(40, [8, 6])), refeed=False)
    second = Planner(FastNet(AutoEncoder(40, [8, 6])), refeed=False)
    chosen = first.choose(batch)
    assert second.choose(batch) == chosen
    assert second.rates is first.rates  # timed once, reused


@pytest.mark.parametrize("compiled", [False, True])
def test_eager_gather_is_not_offered_when_a_batch_has_more_ratings_than_items(
    monkeypatch, compiled: bool
):
    """The eager gather materialises (nnz x width) tensors; compiled, it reads each rated row
    once and competes on its measured rate like the others."""
    monkeypatch.setattr(gather_dot.KERNEL, "failed", not compiled)
    if not compiled:  # no compiler: the hand-written loop does not build either
        monkeypatch.setattr(gather_dot, "native_kernel", lambda: None)
    monkeypatch.setattr(gather_dot, "MIN_WEIGHTS", 1)
    monkeypatch.delenv("DEEPREC_OUTPUT_STRATEGY", raising=False)
    monkeypatch.delenv("DEEPREC_INPUT_STRATEGY", raising=False)
    torch.manual_seed(0)
    planner = Planner(FastNet(AutoEncoder(40, [8, 6])), refeed=False)
    # probe rates that make gather look far cheaper than everything else
    planner.rates = {"dense": 1.0, "sparse": 1.0, "union": 1.0, "gather": 1e-9}
    planner.rates.update({"input-dense": 1.0, "input-sparse": 1.0})
    dense_batch = small_batch()  # 16 rows x 40 items at 30%+: more ratings than items
    assert dense_batch.nnz >= dense_batch.n_cols
    assert (planner.choose(dense_batch)[1] == "gather") is compiled
    rng = np.random.default_rng(1)
    rows = np.arange(16)
    cols = rng.integers(0, 40, size=16)
    matrix = CSRMatrix.from_coo(rows, cols, np.full(16, 3.0, np.float32), (16, 40))
    sparse_batch = row_batch(matrix, rows).prepare()  # 16 ratings over 40 items
    assert sparse_batch.nnz < sparse_batch.n_cols
    assert planner.choose(sparse_batch)[1] == "gather"
