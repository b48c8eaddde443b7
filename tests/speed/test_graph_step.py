"""The GPU path's pieces, checked on the CPU (CI has no GPU; tests/gpu runs them on CUDA).

- device_batches: the padded on-device batch builder gives exactly deeprec.data.batching's
  batches, and the epoch plan's buckets hold every batch;
- graph_step: padding changes no loss, gradient or update (float64), the step equals the
  reference step over whole epochs, and it compiles with torch.compile(fullgraph=True): no
  graph break, i.e. no host synchronisation or data-dependent shape inside the step;
- the trainer's GPU branch (forced onto the CPU) trains like the per-batch path.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deeprec.data.batching import epoch_order, iter_row_batches, row_batch
from deeprec.data.sparse import CSRMatrix
from deeprec.errors import ConfigError
from deeprec.step import graph as graph_step
from deeprec.step.device_batches import (
    DeviceCSR,
    bucket_sizes,
    gather_padded,
    host_padded,
    max_batch_nnz,
    plan_epoch,
)
from deeprec.step.graph import DenseStepCore, GraphStep, unsupported_reason
from deeprec.step.reference import reference_step
from deeprec.train.config import TrainConfig
from deeprec.train.trainer import Trainer, build_model

from .test_bf16_training import BF16_RMSE_TOLERANCE, low_rank_data
from .test_fast_equivalence import make_models, random_matrix


def sparse_matrix(seed: int, rows: int = 57, cols: int = 31, empty_rows: bool = True) -> CSRMatrix:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0 if empty_rows else 1, cols // 2, size=rows)
    r = np.repeat(np.arange(rows), lengths)
    c = np.concatenate([rng.choice(cols, size=n, replace=False) for n in lengths])
    values = rng.integers(0, 6, size=r.shape[0]).astype(np.float32)  # 0 is a rating
    return CSRMatrix.from_coo(r, c, values, (rows, cols))


# ------------------------------------------------------------------ batch building


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("batch_size", [1, 5, 16])
def test_device_batches_equal_cpu_batching(seed: int, batch_size: int) -> None:
    matrix = sparse_matrix(seed)
    csr = DeviceCSR.from_csr(matrix)
    sizes = bucket_sizes(max_batch_nnz(matrix.row_lengths(), batch_size), smallest=8)
    order = epoch_order(np.arange(matrix.shape[0]), seed, 1)
    plan = plan_epoch(matrix.row_lengths(), order, batch_size, sizes)
    batches = list(iter_row_batches(matrix, order, batch_size))
    assert plan.n_batches == len(batches)
    for b, expected in enumerate(batches):
        size = int(plan.padded[b])
        assert plan.nnz[b] == expected.nnz <= size
        assert plan.real_rows[b] == expected.size
        rows = torch.from_numpy(plan.rows[b])
        local, cols, values, valid = gather_padded(csr.indptr, csr.indices, csr.values, rows, size)
        cols = cols.long()
        n = expected.nnz
        assert local.shape == cols.shape == values.shape == valid.shape == (size,)
        assert int(valid.sum()) == n and bool(valid[:n].all())
        torch.testing.assert_close(local[:n], expected.local, rtol=0, atol=0)
        torch.testing.assert_close(cols[:n], expected.cols, rtol=0, atol=0)
        torch.testing.assert_close(values[:n], expected.values, rtol=0, atol=0)
        # padding: the spare row, column 0, value 0
        assert bool((local[n:] == batch_size).all()) and bool((values[n:] == 0).all())
        assert bool((cols[n:] == 0).all())
        h_local, h_cols, h_values = host_padded(matrix, plan.rows[b], size, csr.pad_row)
        np.testing.assert_array_equal(h_local, local.numpy())
        np.testing.assert_array_equal(h_cols, cols.numpy())
        np.testing.assert_array_equal(h_values, values.numpy())


def test_buckets_hold_every_batch_with_little_padding() -> None:
    sizes = bucket_sizes(1_100_000)
    assert sizes[0] == 1024 and sizes[-1] >= 1_100_000
    assert bool((np.diff(sizes) > 0).all()) and bool((sizes % 128 == 0).all())
    assert bool((sizes[1:] <= np.ceil(sizes[:-1] * 1.25) + 128).all())
    assert len(sizes) < 40  # a handful of shapes per epoch, a few dozen at most
    lengths = np.array([5, 9, 1, 7, 3])
    assert max_batch_nnz(lengths, 2) == 16 and max_batch_nnz(lengths, 9) == 25
    with pytest.raises(ValueError, match="largest bucket"):
        plan_epoch(lengths, np.arange(5), 2, np.array([8]))


# ------------------------------------------------------------------ the step


def _step_once(model, optimizer, matrix, rows, size, batch_size, **kw):
    core = DenseStepCore(model, optimizer, batch_size=batch_size, **kw)
    csr = DeviceCSR.from_csr(matrix)
    padded = np.full(batch_size, csr.pad_row)
    padded[: rows.shape[0]] = rows
    local, cols, values, _ = gather_padded(
        csr.indptr, csr.indices, csr.values, torch.from_numpy(padded), size
    )
    core.step(local, cols, values, torch.tensor(rows.shape[0]))
    return float(core.sse[0])


@pytest.mark.parametrize("refeed", [0, 2])
def test_padding_leaves_loss_gradients_and_update_unchanged(refeed: int) -> None:
    """float64: the same batch padded to its nnz, to 5x its nnz and with 3 empty pad rows
    gives the same SSE and the same updated weights and momentum as the reference step."""
    matrix = random_matrix(0)
    rows = np.array([3, 0, 7, 11, 5])
    batch = row_batch(matrix, rows)
    ref, _ = make_models(False)
    opt = torch.optim.SGD(ref.parameters(), lr=0.01, momentum=0.9, weight_decay=0.01)
    expected = reference_step(ref, opt, batch, refeed_steps=refeed)
    for size, batch_size in ((batch.nnz, 5), (5 * batch.nnz, 5), (2 * batch.nnz, 8)):
        _, model = make_models(False)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=0.01)
        sse = _step_once(model, optimizer, matrix, rows, size, batch_size, refeed_steps=refeed)
        assert sse == pytest.approx(expected.sse, rel=1e-12)
        for (name, p_ref), p in zip(ref.named_parameters(), model.parameters(), strict=True):
            torch.testing.assert_close(p.detach(), p_ref.detach(), rtol=1e-10, atol=1e-12, msg=name)
            torch.testing.assert_close(
                optimizer.state[p]["momentum_buffer"],
                opt.state[p_ref]["momentum_buffer"],
                rtol=1e-10,
                atol=1e-12,
                msg=name,
            )


def _epochs(graph_kw=None, *, constrained=False, batch_size=8, epochs=2, refeed=0, **model_kw):
    """Reference steps and GraphStep over `epochs` epochs from the same weights and seeds;
    the learning rate changes between epochs (the step's lr is a tensor it re-reads)."""
    matrix = random_matrix(1)
    ref, new = make_models(constrained, **model_kw)
    kw = dict(lr=0.01, momentum=0.9, weight_decay=0.01)
    o_ref, o_new = torch.optim.SGD(ref.parameters(), **kw), torch.optim.SGD(new.parameters(), **kw)
    graph = GraphStep(
        new, o_new, matrix, batch_size=batch_size, refeed_steps=refeed, **(graph_kw or {})
    )
    rows = np.arange(matrix.shape[0])
    for epoch in (1, 2)[:epochs]:
        for group in (*o_ref.param_groups, *o_new.param_groups):
            group["lr"] = 0.01 / epoch
        order = epoch_order(rows, 0, epoch)
        graph.begin_epoch(graph.plan(order))
        sse = count = 0
        for b, batch in enumerate(iter_row_batches(matrix, order, batch_size)):
            torch.manual_seed(100 * epoch + b)
            r = reference_step(ref, o_ref, batch, refeed_steps=refeed)
            sse, count = sse + r.sse, count + r.count
            torch.manual_seed(100 * epoch + b)
            graph.run(b, b + 1)
        assert graph.count == count
        assert graph.sse() == pytest.approx(sse, rel=1e-10)
    return ref, new


def _assert_same_weights(ref, new) -> None:
    for (name, p_ref), p in zip(ref.named_parameters(), new.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), p_ref.detach(), rtol=1e-9, atol=1e-11, msg=name)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("refeed", [0, 1])
def test_graph_step_equals_reference_over_epochs(
    constrained: bool, refeed: int, fused: bool, monkeypatch
) -> None:
    """24 rows in batches of 10: the short last batch is padded with empty rows. Both
    updates: torch's fused SGD kernel and the element-wise one torch.compile traces."""
    if not fused:
        monkeypatch.setattr(graph_step, "_fused_sgd_works", lambda dtype, device: False)
    elif not graph_step._fused_sgd_works(torch.float64, torch.device("cpu")):
        pytest.skip("torch._fused_sgd_ with a tensor lr is not available")
    ref, new = _epochs(constrained=constrained, refeed=refeed, batch_size=10)
    _assert_same_weights(ref, new)


@pytest.mark.parametrize("placement", ["code", "all"])
def test_dropout_draws_equal_reference_on_full_batches(placement: str) -> None:
    """On the CPU the step draws its masks as F.dropout does (24 rows, batches of 8)."""
    ref, new = _epochs(refeed=1, dropout=0.5, dropout_placement=placement)
    _assert_same_weights(ref, new)


def test_host_staged_batches_equal_resident_ones() -> None:
    """Data that does not fit on the device: batches built on the host, same result."""
    ref, new = _epochs(graph_kw={"resident": False}, batch_size=10, refeed=1)
    _assert_same_weights(ref, new)


def test_unsupported_settings_are_named() -> None:
    ref, _ = make_models(False)
    assert unsupported_reason(ref, torch.optim.SGD(ref.parameters(), lr=0.1)) is None
    assert "Adam" in unsupported_reason(ref, torch.optim.Adam(ref.parameters()))
    nesterov = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    assert "nesterov" in unsupported_reason(ref, nesterov)
    scaled, _ = make_models(False, input_row_scale=1.0)
    assert unsupported_reason(scaled, torch.optim.SGD(scaled.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="Adam"):
        DenseStepCore(ref, torch.optim.Adam(ref.parameters()), batch_size=4)


def test_step_compiles_as_one_graph() -> None:
    """torch.compile(fullgraph=True) raises on any graph break (an .item(), a host read, a
    data-dependent shape): the batch builder and the whole step, re-feeding and dropout
    included, are one graph; the compiled step updates as the eager one does. aot_eager
    traces forward and update like Inductor would without needing a C++ compiler."""
    if not hasattr(torch, "compile"):
        pytest.skip("torch.compile is not available")
    matrix = random_matrix(0)
    results = []
    for compiled in (False, True):
        _, model = make_models(True, dropout=0.5, dropout_placement="all")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=0.01)
        graph = GraphStep(model, optimizer, matrix, batch_size=8, refeed_steps=1, input_dropout=0.1)
        plan = graph.plan(np.arange(matrix.shape[0]))
        graph.begin_epoch(plan)
        body = graph._body
        if compiled:
            torch._dynamo.reset()
            try:
                body = torch.compile(graph._body, fullgraph=True, backend="aot_eager")
            except RuntimeError as exc:  # e.g. a Python version dynamo does not support
                pytest.skip(f"torch.compile unavailable: {exc}")
        torch.manual_seed(0)
        for b in range(2):
            graph.info.copy_(graph._plan_info[b])
            body(int(plan.padded[b]))
        results.append((graph.sse(), [p.detach().clone() for p in model.parameters()]))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-12)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ the trainer


def _fit(data, *, graph: bool, **overrides):
    values = dict(
        hidden=[16, 8],
        dropout=0.0,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        batch_size=32,
        epochs=2,
        seed=5,
        lr_schedule="multistep",
        lr_milestones=[1],
    )
    values.update(overrides)
    config = TrainConfig(**values)
    torch.manual_seed(config.seed)
    model = build_model(config, data.train.shape[1])
    trainer = Trainer(model, config, data, rating_range=(1.0, 5.0))
    trainer.graph_step_on_cpu = graph
    result = trainer.fit()
    assert (trainer.graph_step is not None) == graph
    return result, model


def test_trainer_gpu_branch_in_bf16_stays_within_tolerance_of_fp32() -> None:
    data = low_rank_data(3)
    fp32, _ = _fit(data, graph=True, refeed_steps=1)
    bf16, _ = _fit(data, graph=True, refeed_steps=1, precision="bf16")
    for a, b in zip(fp32.history, bf16.history, strict=True):
        assert abs(b.train_rmse - a.train_rmse) < BF16_RMSE_TOLERANCE
        assert abs(b.valid_rmse - a.valid_rmse) < BF16_RMSE_TOLERANCE
        assert b.train_rmse != a.train_rmse  # bf16 really ran in lower precision


@pytest.mark.parametrize("refeed", [0, 1])
def test_trainer_gpu_branch_trains_like_the_per_batch_path(refeed: int) -> None:
    """fp32, two epochs with an lr change: the GPU branch (run on the CPU here) gives the
    per-batch fast path's RMSEs and weights within fp32 rounding."""
    data = low_rank_data(3)
    per_batch, m1 = _fit(data, graph=False, refeed_steps=refeed)
    graph, m2 = _fit(data, graph=True, refeed_steps=refeed)
    for a, b in zip(per_batch.history, graph.history, strict=True):
        assert b.train_rmse == pytest.approx(a.train_rmse, abs=1e-4)
        assert b.valid_rmse == pytest.approx(a.valid_rmse, abs=1e-4)
        assert b.lr == a.lr
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(p2, p1, rtol=1e-3, atol=1e-4)


def test_trainer_keeps_the_per_batch_path_where_the_graph_step_does_not_apply() -> None:
    data = low_rank_data(4)
    config = TrainConfig(hidden=[8], optimizer="adam", epochs=1, batch_size=64)
    trainer = Trainer(build_model(config, data.train.shape[1]), config, data)
    trainer.graph_step_on_cpu = True
    trainer.fit()
    assert trainer.graph_step is None and "Adam" in trainer.graph_step_skipped
    config = TrainConfig(hidden=[8], optimizer="sgd", epochs=1, batch_size=64, cuda_graphs=False)
    trainer = Trainer(build_model(config, data.train.shape[1]), config, data)
    trainer.graph_step_on_cpu = True
    trainer.fit()
    assert trainer.graph_step is None
    calls = []
    config = TrainConfig(hidden=[8], optimizer="sgd", epochs=1, batch_size=64)
    trainer = Trainer(
        build_model(config, data.train.shape[1]),
        config,
        data,
        on_batch_end=lambda *a: calls.append(a),
    )
    trainer.graph_step_on_cpu = True
    trainer.fit()
    assert trainer.graph_step is None and calls and "callback" in trainer.graph_step_skipped


def test_non_finite_loss_is_reported_per_epoch() -> None:
    from deeprec.errors import TrainingError

    data = low_rank_data(5)
    with pytest.raises(TrainingError, match="once per epoch"):
        _fit(data, graph=True, lr=1e6, epochs=1)


def test_cuda_graphs_option_is_validated() -> None:
    assert TrainConfig().cuda_graphs is True
    with pytest.raises(ConfigError, match="cuda_graphs"):
        TrainConfig(cuda_graphs="yes")
    assert math.isfinite(TrainConfig(cuda_graphs=False).lr)
