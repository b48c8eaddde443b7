"""CSR batches in both orders, the prefetching iterator, and sparse-input evaluation."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from deeprec.data.batching import iter_row_batches, prefetch, row_batch
from deeprec.data.sparse import CSRMatrix
from deeprec.model.autoencoder import AutoEncoder
from deeprec.step.sparse_ops import sparse_cols_matmul, sparse_rows_matmul
from deeprec.train.evaluation import evaluate_sse, predict_rows


def matrix(seed: int = 0, shape=(40, 30), density=0.15) -> CSRMatrix:
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < density
    mask[5] = False  # an empty row
    rows, cols = np.nonzero(mask)
    values = rng.integers(0, 6, size=rows.shape[0]).astype(np.float32)
    return CSRMatrix.from_coo(rows, cols, values, shape)


def test_row_batch_matches_select_rows_and_dense() -> None:
    m = matrix()
    rows = np.array([7, 5, 0, 39, 12])
    batch = row_batch(m, rows).prepare()
    local, cols, values = m.select_rows(rows)
    assert np.array_equal(batch.local.numpy(), local)
    assert np.array_equal(batch.cols.numpy(), cols)
    assert np.array_equal(batch.values.numpy(), values)
    lengths = m.row_lengths()[rows]
    assert np.array_equal(np.diff(batch.row_offsets().numpy()), lengths)
    _x, mask = batch.dense()
    assert int(mask.sum()) == batch.nnz  # 0 ratings keep their mask
    by_col = batch.by_column()
    assert np.all(np.diff(batch.cols[by_col.perm].numpy()) >= 0)
    union, position = batch.column_union()
    assert torch.equal(union, torch.unique(batch.cols))
    assert torch.equal(union[position], batch.cols)
    x, _ = batch.dense()
    flat = batch.flat_positions()
    assert batch._flat is flat  # computed by prepare(), on the prefetch thread
    assert torch.equal(x.reshape(-1)[flat], batch.values)
    assert torch.equal(x.reshape(-1)[flat], x[batch.local, batch.cols])


def test_sparse_products_equal_dense_products() -> None:
    m = matrix(1)
    batch = row_batch(m, np.arange(20))
    x, _ = batch.dense(torch.float64)
    table = torch.randn(m.shape[1], 7, dtype=torch.float64)
    g = torch.randn(20, 7, dtype=torch.float64)
    torch.testing.assert_close(sparse_rows_matmul(batch, table), x @ table)
    torch.testing.assert_close(sparse_cols_matmul(batch, g), x.t() @ g)


def test_prefetch_keeps_order_and_everything() -> None:
    m = matrix(2)
    order = np.random.default_rng(0).permutation(m.shape[0])
    direct = list(iter_row_batches(m, order, 7))
    fetched = list(prefetch(iter_row_batches(m, order, 7, prepare=True), depth=2))
    assert [b.rows.tolist() for b in fetched] == [b.rows.tolist() for b in direct]
    assert sum(b.size for b in fetched) == m.shape[0]  # the last partial batch included


def test_prefetch_reraises_builder_errors_and_stops_when_closed() -> None:
    def broken():
        yield 1
        raise ValueError("bad batch")

    stream = prefetch(broken())
    assert next(stream) == 1
    with pytest.raises(ValueError, match="bad batch"):
        next(stream)

    before = threading.active_count()
    stream = prefetch(iter(range(1000)), depth=1)
    assert next(stream) == 0
    stream.close()
    assert threading.active_count() <= before


@pytest.mark.parametrize("constrained", [False, True])
def test_fast_evaluation_equals_reference(constrained: bool) -> None:
    train, held = matrix(3), matrix(4)
    torch.manual_seed(0)
    model = AutoEncoder(train.shape[1], [6, 4], constrained=constrained, dropout=0.5).double()
    fast = evaluate_sse(model, train, held, batch_size=8, clip=(1, 5), compute="fast")
    ref = evaluate_sse(model, train, held, batch_size=8, clip=(1, 5), compute="reference")
    assert fast[2] == ref[2]
    assert fast[0] == pytest.approx(ref[0], rel=1e-12)
    assert fast[1] == pytest.approx(ref[1], rel=1e-12)
    rows = np.array([5, 1, 2])  # row 5 has no training ratings: an empty bag
    torch.testing.assert_close(
        predict_rows(model, train, rows, compute="fast"),
        predict_rows(model, train, rows, compute="reference"),
    )


def test_prefetch_only_where_a_core_is_free_or_the_step_runs_on_a_gpu(monkeypatch) -> None:
    """A builder thread beside torch threads that fill every core only competes with them."""
    import os

    from deeprec.data import batching

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    monkeypatch.setattr(batching.torch, "get_num_threads", lambda: 2)
    assert batching.prefetch_depth("cpu") == 0
    assert batching.prefetch_depth("cuda") == 2  # the CPU waits for the GPU meanwhile
    monkeypatch.setattr(batching.torch, "get_num_threads", lambda: 1)
    assert batching.prefetch_depth(torch.device("cpu")) == 2
