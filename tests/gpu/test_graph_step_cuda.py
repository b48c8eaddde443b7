"""The GPU-bound step (step/graph.py) on CUDA: CUDA graphs against the reference step.

Skipped without a CUDA GPU (CI has none; tests/speed/test_graph_step.py checks the same
pieces eagerly on the CPU). Run with `python -m pytest tests/gpu -q` on a GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeprec.data.batching import epoch_order, iter_row_batches
from deeprec.step.device_batches import bucket_sizes, max_batch_nnz
from deeprec.step.graph import DenseStepCore, GraphStep
from deeprec.step.reference import reference_step
from deeprec.train.config import TrainConfig
from deeprec.train.trainer import Trainer, build_model
from speed.test_bf16_training import BF16_RMSE_TOLERANCE, low_rank_data
from speed.test_fast_equivalence import make_models
from speed.test_graph_step import sparse_matrix

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU = torch.device("cuda", 0)


def _graph_vs_reference(*, constrained=False, refeed=0, resident=True, epochs=3, batch_size=16):
    """float64 on the GPU: reference steps vs GraphStep with a fine bucket ladder (several
    buckets, each captured after one eager step), lr changed every epoch."""
    matrix = sparse_matrix(0, rows=150, cols=37)
    ref, new = make_models(constrained)
    ref, new = ref.to(GPU), new.to(GPU)
    kw = dict(lr=0.01, momentum=0.9, weight_decay=0.01)
    o_ref, o_new = torch.optim.SGD(ref.parameters(), **kw), torch.optim.SGD(new.parameters(), **kw)
    sizes = bucket_sizes(
        max_batch_nnz(matrix.row_lengths(), batch_size), smallest=64, growth=1.25, quantum=8
    )
    graph = GraphStep(
        new,
        o_new,
        matrix,
        batch_size=batch_size,
        refeed_steps=refeed,
        resident=resident,
        sizes=sizes,
    )
    rows = np.flatnonzero(matrix.row_lengths() > 0)
    for epoch in range(1, epochs + 1):
        for group in (*o_ref.param_groups, *o_new.param_groups):
            group["lr"] = 0.01 / epoch
        order = epoch_order(rows, 0, epoch)
        graph.begin_epoch(graph.plan(order))
        sse = count = 0
        for b, batch in enumerate(iter_row_batches(matrix, order, batch_size)):
            r = reference_step(ref, o_ref, batch.to(GPU), refeed_steps=refeed)
            sse, count = sse + r.sse, count + r.count
            graph.run(b, b + 1)
        assert graph.count == count
        assert graph.sse() == pytest.approx(sse, rel=1e-9)
    assert graph.graphs and graph.graph_replays > 0  # steps really ran as graphs
    for (name, p_ref), p in zip(ref.named_parameters(), new.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), p_ref.detach(), rtol=1e-9, atol=1e-11, msg=name)
    return graph


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("refeed", [0, 1])
def test_cuda_graphs_match_the_reference_step(constrained: bool, refeed: int) -> None:
    _graph_vs_reference(constrained=constrained, refeed=refeed)


def test_pinned_host_staging_matches_the_reference_step() -> None:
    graph = _graph_vs_reference(resident=False, refeed=1)
    assert graph.csr is None and graph._ring[0]["local"].is_pinned()


def _fit(data, **overrides):
    values = dict(
        hidden=[64, 32],
        dropout=0.0,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        batch_size=32,
        epochs=2,
        seed=5,
    )
    values.update(overrides)
    device = values.pop("device", GPU)
    config = TrainConfig(**values)
    torch.manual_seed(config.seed)
    model = build_model(config, data.train.shape[1]).to(device)
    trainer = Trainer(model, config, data, rating_range=(1.0, 5.0))
    record = trainer.fit().history[-1]
    return (record.train_rmse, record.valid_rmse), trainer


@pytest.mark.parametrize("refeed", [0, 1])
def test_trainer_uses_cuda_graphs_and_trains_like_the_cpu(refeed: int) -> None:
    data = low_rank_data(3)
    cpu, _ = _fit(data, device="cpu", refeed_steps=refeed)
    gpu, trainer = _fit(data, refeed_steps=refeed)
    assert trainer.graph_step is not None and trainer.graph_step.graph_replays > 0
    assert gpu == pytest.approx(cpu, abs=2e-3)
    per_batch, trainer = _fit(data, refeed_steps=refeed, cuda_graphs=False)
    assert trainer.graph_step is None
    assert gpu == pytest.approx(per_batch, abs=2e-3)


@pytest.mark.parametrize("refeed", [0, 1])
def test_cuda_graph_bf16_within_tolerance_of_fp32(refeed: int) -> None:
    data = low_rank_data()
    fp32, _ = _fit(data, refeed_steps=refeed, epochs=1, dropout=0.2)
    bf16, trainer = _fit(data, refeed_steps=refeed, epochs=1, dropout=0.2, precision="bf16")
    assert trainer.graph_step is not None
    assert abs(bf16[0] - fp32[0]) < BF16_RMSE_TOLERANCE
    assert abs(bf16[1] - fp32[1]) < BF16_RMSE_TOLERANCE
    assert bf16 != fp32


def test_dropout_masks_in_a_cuda_graph_are_fresh_at_every_replay() -> None:
    """The step's dropout (native_dropout, as F.dropout on CUDA) inside a captured graph draws
    new Philox numbers at each replay, with the right keep rate and scale."""
    like = torch.ones(128, 1024, device=GPU)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        DenseStepCore._noise(None, like, 0.8)  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph, static = torch.cuda.CUDAGraph(), {}
    with torch.cuda.graph(graph):
        static["mask"] = DenseStepCore._noise(None, like, 0.8)
    masks = []
    for _ in range(3):
        graph.replay()
        masks.append(static["mask"].clone())
    assert not torch.equal(masks[0], masks[1]) and not torch.equal(masks[1], masks[2])
    for mask in masks:
        assert set(mask.unique().tolist()) <= {0.0, 5.0}
        assert abs(float((mask > 0).float().mean()) - 0.2) < 0.01


def test_dropout_in_cuda_graphs_trains_like_eager_dropout() -> None:
    """Trained with dropout, graph and per-batch step end near each other (other draws)."""
    data = low_rank_data(6)
    graphed, trainer = _fit(data, dropout=0.2, refeed_steps=1)
    assert trainer.graph_step.graph_replays > 0
    eager, _ = _fit(data, dropout=0.2, refeed_steps=1, cuda_graphs=False)
    assert graphed == pytest.approx(eager, abs=0.05)


def test_step_compiles_with_reduce_overhead_on_cuda() -> None:
    """The same step as one torch.compile(mode='reduce-overhead', fullgraph=True) region
    (Inductor + Triton + CUDA graphs) updates as the eager step does (fp32)."""
    pytest.importorskip("triton")
    matrix = sparse_matrix(1, rows=64, cols=37)
    results = []
    for compiled in (False, True):
        _, model = make_models(False)
        model = model.float().to(GPU)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        graph = GraphStep(model, optimizer, matrix, batch_size=16, refeed_steps=1, graphs=False)
        plan = graph.plan(np.arange(matrix.shape[0]))
        graph.begin_epoch(plan)
        body = graph._body
        if compiled:
            torch._dynamo.reset()
            body = torch.compile(graph._body, mode="reduce-overhead", fullgraph=True)
        for b in range(plan.n_batches):
            graph.info.copy_(graph._plan_info[b])
            body(int(plan.padded[b]))
        results.append((graph.sse(), [p.detach().clone() for p in model.parameters()]))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-4)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
