"""Kernelised weight matrices (weight_kernel_dim, kernelNet) and the L-BFGS optimizer:
the kernel's shape, the effective weights everywhere, training, save/load, config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeprec.errors import ConfigError
from deeprec.estimator import DeepRec
from deeprec.model.autoencoder import AutoEncoder, weight_kernel
from deeprec.train.config import TrainConfig
from deeprec.train.optim import build_optimizer, param_groups

KERNEL = dict(
    hidden=[8, 8],
    activation="sigmoid",
    orientation="item",
    center="none",
    standardize=False,
    dropout=0.0,
    compute="reference",
    weight_kernel_dim=3,
    kernel_sparsity=1e-4,
    weight_decay=1e-3,
    epochs=3,
    batch_size=4096,
    lr=0.01,
    seed=3,
)


def test_kernel_is_one_minus_squared_distance_clipped_at_zero() -> None:
    u = torch.tensor([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [3.0, 4.0]])
    v = torch.tensor([[0.0, 0.0], [0.0, 0.5]])
    k = weight_kernel(u, v)
    assert k.shape == (2, 4)  # (out, in), like the weight matrices
    expected = torch.tensor([[1.0, 0.75, 0.0, 0.0], [0.75, 0.5, 0.0, 0.0]])
    torch.testing.assert_close(k, expected)
    gen = torch.Generator().manual_seed(0)
    k = weight_kernel(torch.randn(50, 4, generator=gen), torch.randn(30, 4, generator=gen))
    assert float(k.min()) >= 0.0 and float(k.max()) <= 1.0


def test_kernel_is_zero_beyond_distance_one_and_matches_the_definition() -> None:
    gen = torch.Generator().manual_seed(1)
    u, v = torch.randn(40, 3, generator=gen) * 0.7, torch.randn(20, 3, generator=gen) * 0.7
    dist2 = torch.cdist(v.double(), u.double()) ** 2
    k = weight_kernel(u, v).double()
    torch.testing.assert_close(k, (1 - dist2).clamp_min(0), atol=1e-6, rtol=0)
    far = dist2 >= 1.0 + 1e-5
    assert far.any() and torch.all(k[far] == 0)


def test_kernelised_model_uses_w_times_k_in_every_layer() -> None:
    model = AutoEncoder(6, [4, 3], activation="sigmoid", weight_kernel_dim=2)
    assert model.architecture() == "6,4,3,kernel2,4,6"
    # vectors start near 0, so K ~ 1; move them to make K matter
    with torch.no_grad():
        for p in model.kernel_vectors():
            p.normal_(0.0, 0.4)
    x = torch.rand(5, 6)
    h = x
    for i in range(2):
        k = weight_kernel(model.encoder_kernels_in[i], model.encoder_kernels_out[i])
        h = torch.sigmoid(h @ (model.encoder_weights[i] * k).t() + model.encoder_biases[i])
    k = weight_kernel(model.decoder_kernels_in[0], model.decoder_kernels_out[0])
    h = torch.sigmoid(h @ (model.decoder_weights[0] * k).t() + model.decoder_biases[0])
    k = weight_kernel(model.decoder_kernels_in[1], model.decoder_kernels_out[1])
    out = h @ (model.decoder_weights[1] * k).t() + model.decoder_biases[1]
    torch.testing.assert_close(model(x), out)
    assert len(model.kernels()) == 4
    with torch.no_grad():
        assert all(float(k.min()) >= 0 and float(k.max()) <= 1 for k in model.kernels())


def test_kernel_vectors_leave_the_other_initial_weights_unchanged() -> None:
    torch.manual_seed(0)
    plain = AutoEncoder(6, [4])
    torch.manual_seed(0)
    kernel = AutoEncoder(6, [4], weight_kernel_dim=5)
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tensor, kernel.state_dict()[name])
    assert all(float(p.detach().abs().max()) <= 2e-3 for p in kernel.kernel_vectors())


def test_weight_decay_skips_the_kernel_vectors() -> None:
    model = AutoEncoder(6, [4], weight_kernel_dim=2)
    config = TrainConfig(weight_kernel_dim=2, compute="reference", weight_decay=0.1)
    groups = param_groups(model.parameters(), config)
    decayed = {id(p) for p in groups[0]["params"]}
    assert decayed == {id(p) for p in (*model.encoder_weights, *model.decoder_weights)}
    assert groups[1]["weight_decay"] == 0.0


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_kernel_model_trains_predicts_and_round_trips_bit_for_bit(
    dataset, tmp_path, optimizer
) -> None:
    kw = dict(KERNEL, optimizer=optimizer)
    if optimizer == "lbfgs":
        kw.update(lr=1.0, lbfgs_iterations=3)
    model = DeepRec(**kw).fit(dataset)
    history = [r.train_rmse for r in model.history_]
    assert all(np.isfinite(history)) and history[-1] < history[0]
    assert model.module_.weight_kernel_dim == 3
    model.save(tmp_path / "m")
    loaded = DeepRec.load(tmp_path / "m")
    assert loaded.weight_kernel_dim == 3 and loaded.kernel_sparsity == 1e-4
    sa, sb = model.module_.state_dict(), loaded.module_.state_dict()
    assert sa.keys() == sb.keys() and any("kernels_in" in k for k in sa)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    test = dataset.to_pandas("test")
    users, items = test["user"].to_numpy(), test["item"].to_numpy()
    pred = model.predict(users, items, clip=False)
    np.testing.assert_array_equal(loaded.predict(users, items, clip=False), pred)
    # evaluation (fast sparse path) and prediction use the effective weights W * K
    with torch.no_grad():
        for p in model.module_.kernel_vectors():
            p.normal_(0.0, 0.5)  # (a common shift would keep every distance)
    moved = model.predict(users, items, clip=False)
    assert not np.allclose(moved, pred)
    assert np.isfinite(model.score(dataset, "test")["rmse"])


def test_fast_and_reference_evaluation_agree_for_a_kernel_model(dataset) -> None:
    from deeprec.train.evaluation import evaluate_sse
    from deeprec.train.trainer import OrientedData

    model = DeepRec(**KERNEL).fit(dataset)
    with torch.no_grad():
        for p in model.module_.kernel_vectors():
            p.normal_(0.0, 0.5)
    data = OrientedData.from_dataset(dataset, "item")
    fast = evaluate_sse(model.module_, data.train, data.valid, compute="fast")
    ref = evaluate_sse(model.module_, data.train, data.valid, compute="reference")
    assert fast[2] == ref[2]
    assert fast[0] == pytest.approx(ref[0], rel=1e-5)


def test_kernel_sparsity_penalty_pulls_kernels_down(dataset) -> None:
    kw = dict(KERNEL, epochs=20, lr=0.05)
    weak = DeepRec(**{**kw, "kernel_sparsity": 0.0}).fit(dataset)
    strong = DeepRec(**{**kw, "kernel_sparsity": 1.0}).fit(dataset)
    with torch.no_grad():
        total = [sum(float(k.sum()) for k in m.module_.kernels()) for m in (weak, strong)]
    assert total[1] < total[0]


def test_lbfgs_runs_lbfgs_iterations_per_step() -> None:
    model = AutoEncoder(6, [4], weight_kernel_dim=2)
    config = TrainConfig(
        optimizer="lbfgs",
        compute="reference",
        dropout=0.0,
        lr=1.0,
        weight_kernel_dim=2,
        lbfgs_iterations=4,
    )
    opt = build_optimizer(model.parameters(), config)
    assert isinstance(opt, torch.optim.LBFGS)
    assert opt.param_groups[0]["max_iter"] == 4


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"weight_kernel_dim": 2}, "weight_kernel_dim"),  # compute: fast (the default)
        ({"weight_kernel_dim": -1, "compute": "reference"}, "weight_kernel_dim"),
        ({"weight_kernel_dim": 1.5, "compute": "reference"}, "weight_kernel_dim"),
        ({"weight_kernel_dim": True, "compute": "reference"}, "weight_kernel_dim"),
        (
            {"weight_kernel_dim": 2, "compute": "reference", "constrained": True},
            "weight_kernel_dim",
        ),
        ({"kernel_sparsity": 0.1}, "kernel_sparsity"),  # no kernels
        (
            {"kernel_sparsity": -0.1, "weight_kernel_dim": 2, "compute": "reference"},
            "kernel_sparsity",
        ),
        (
            {"kernel_sparsity": "x", "weight_kernel_dim": 2, "compute": "reference"},
            "kernel_sparsity",
        ),
        ({"optimizer": "lbfgs"}, "optimizer"),  # compute: fast
        ({"optimizer": "lbfgs", "compute": "reference", "dropout": 0.5}, "optimizer"),
        (
            {"optimizer": "lbfgs", "compute": "reference", "dropout": 0.0, "input_dropout": 0.1},
            "optimizer",
        ),
        (
            {"optimizer": "lbfgs", "compute": "reference", "dropout": 0.0, "refeed_steps": 1},
            "optimizer",
        ),
        ({"lbfgs_iterations": 0}, "lbfgs_iterations"),
        ({"lbfgs_iterations": 2.5}, "lbfgs_iterations"),
    ],
)
def test_bad_kernel_and_lbfgs_values_raise_config_error(values: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig.from_dict(values, source="test.yaml")


def test_the_model_itself_refuses_bad_kernel_settings() -> None:
    with pytest.raises(ConfigError, match="weight_kernel_dim"):
        AutoEncoder(4, [2], weight_kernel_dim=-1)
    with pytest.raises(ConfigError, match="constrained"):
        AutoEncoder(4, [2], weight_kernel_dim=2, constrained=True)
    with pytest.raises(ConfigError, match="compute: reference"):
        DeepRec(**{**KERNEL, "compute": "fast"}).config({})


def test_torchscript_export_of_a_kernel_model_matches_pytorch(dataset, tmp_path) -> None:
    from deeprec.recommend.export import export_model

    model = DeepRec(**KERNEL).fit(dataset)
    with torch.no_grad():
        for p in model.module_.kernel_vectors():
            p.normal_(0.0, 0.5)
    report = export_model(model, tmp_path / "m.pt", "torchscript", n_check=4)
    assert report["parity_ok"], report
