"""GLocal-K's global kernel (global_kernel, finetune_epochs): the convolution against a
direct computation, the kernel from pooled outputs, the fine-tuning phase, save/load and
prediction after load, fold-in through the same convolution; the final fit on train +
validation (refit); config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deeprec.data.sparse import CSRMatrix
from deeprec.errors import ConfigError
from deeprec.estimator import DeepRec
from deeprec.model.autoencoder import AutoEncoder
from deeprec.model.global_kernel import global_conv, kernel_from_pooled
from deeprec.train.config import TrainConfig
from deeprec.train.global_finetune import global_conv_csr

GLOBAL = dict(
    hidden=[8],
    activation="sigmoid",
    orientation="item",
    center="none",
    standardize=False,
    dropout=0.0,
    compute="reference",
    weight_kernel_dim=3,
    weight_decay=1e-3,
    epochs=4,
    batch_size=4096,
    lr=0.01,
    seed=3,
    global_kernel=3,
    finetune_epochs=4,
    early_stopping=0,
)


def _direct_conv(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """ReLU(sum over the k x k window of kernel * x), zero outside x: the definition."""
    rows, cols = x.shape
    half = kernel.shape[0] // 2
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(rows):
        for j in range(cols):
            for a in range(-half, half + 1):
                for b in range(-half, half + 1):
                    if 0 <= i + a < rows and 0 <= j + b < cols:
                        out[i, j] += kernel[a + half, b + half] * x[i + a, j + b]
    return np.maximum(out, 0.0)


def _sparse_dense(seed: int, shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 6, size=shape).astype(np.float32)
    x[rng.random(shape) < 0.6] = 0.0
    return x


@pytest.mark.parametrize("size", [1, 3, 5])
def test_global_conv_equals_a_direct_convolution(size: int) -> None:
    x = _sparse_dense(0, (7, 9))
    kernel = np.random.default_rng(size).normal(size=(size, size)).astype(np.float32)
    expected = _direct_conv(x, kernel)
    dense = global_conv(torch.from_numpy(x), torch.from_numpy(kernel)).numpy()
    np.testing.assert_allclose(dense, expected, rtol=1e-5, atol=1e-5)
    # and torch's conv2d ('same' padding) on the image, with a ReLU, as GLocal-K computes it
    conv = F.conv2d(
        torch.from_numpy(x)[None, None], torch.from_numpy(kernel)[None, None], padding="same"
    )
    np.testing.assert_allclose(dense, torch.relu(conv)[0, 0].numpy(), rtol=1e-5, atol=1e-5)
    assert (expected > 0).any() and (expected == 0).any()  # the ReLU acted both ways


@pytest.mark.parametrize("block", [1, 2, 3, 100])
def test_csr_convolution_in_blocks_equals_the_dense_one(block: int) -> None:
    x = _sparse_dense(1, (8, 6))
    rows, cols = np.nonzero(x)
    csr = CSRMatrix.from_coo(rows, cols, x[rows, cols], x.shape)
    kernel = torch.from_numpy(np.random.default_rng(4).normal(size=(3, 3)).astype(np.float32))
    out = global_conv_csr(csr, kernel, block=block)
    dense = np.zeros(x.shape, np.float32)
    r = np.repeat(np.arange(out.shape[0]), out.row_lengths())
    dense[r, out.indices] = out.values
    np.testing.assert_allclose(dense, _direct_conv(x, kernel.numpy()), rtol=1e-5, atol=1e-5)
    assert np.all(out.values > 0)  # only the non-zeros are stored


def test_kernel_comes_from_pooled_outputs() -> None:
    pooled = torch.tensor([1.0, 2.0])
    weight = torch.arange(18, dtype=torch.float32).view(2, 9)
    expected = ((weight[0] + 2 * weight[1]) / 2).view(3, 3)
    expected[1, 1] += 1.0  # the identity kernel: fine-tuning starts at the pre-trained model
    torch.testing.assert_close(kernel_from_pooled(pooled, weight), expected)
    x = _sparse_dense(2, (5, 4))
    g = kernel_from_pooled(pooled, torch.zeros(2, 9))
    np.testing.assert_array_equal(global_conv(torch.from_numpy(x), g).numpy(), x)


def test_global_pool_leaves_the_other_initial_weights_unchanged() -> None:
    torch.manual_seed(0)
    plain = AutoEncoder(6, [4], weight_kernel_dim=2)
    torch.manual_seed(0)
    glocal = AutoEncoder(6, [4], weight_kernel_dim=2, global_kernel=3, n_rows=5)
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tensor, glocal.state_dict()[name])
    assert glocal.global_pool is not None and glocal.global_pool.shape == (5, 9)
    assert "global_kernel_matrix" in glocal.state_dict()
    assert glocal.architecture() == "6,4,kernel2,global3x3,6"


def test_global_kernel_model_fine_tunes_saves_loads_and_predicts_identically(
    dataset, tmp_path
) -> None:
    model = DeepRec(**GLOBAL).fit(dataset)
    assert len(model.history_) == 8  # 4 pre-training + 4 fine-tuning epochs
    assert model.phase_best_epochs_[0] is not None and 1 <= model.phase_best_epochs_[1] <= 4
    g = model.module_.global_kernel_matrix
    assert g.shape == (3, 3) and float(g.abs().sum()) > 0
    # the fine-tuned model reads the convolved training rows
    data_rows = model.rows_
    assert data_rows.nnz > dataset.train.ratings.shape[0]
    model.save(tmp_path / "m")
    loaded = DeepRec.load(tmp_path / "m")
    assert loaded.global_kernel == 3 and loaded.finetune_epochs == 4
    sa, sb = model.module_.state_dict(), loaded.module_.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    np.testing.assert_array_equal(loaded.rows_.values, data_rows.values)
    test = dataset.to_pandas("test")
    users, items = test["user"].to_numpy(), test["item"].to_numpy()
    pred = model.predict(users, items, clip=False)
    np.testing.assert_array_equal(loaded.predict(users, items, clip=False), pred)
    assert np.isfinite(model.score(dataset, "test")["rmse"])
    # the prediction is the model on the convolved rows, not on the raw ones
    with torch.no_grad():
        model.module_.global_kernel_matrix.zero_()
    model._drop_prediction_cache()  # rows_ is computed again, through the zeroed kernel
    assert not np.allclose(model.predict(users, items, clip=False), pred)


def test_validation_is_scored_on_the_convolved_rows(dataset) -> None:
    from deeprec.train.evaluation import evaluate_sse
    from deeprec.train.trainer import OrientedData

    model = DeepRec(**{**GLOBAL, "early_stopping": 10}).fit(dataset)
    data = OrientedData.from_dataset(dataset, "item")
    sse, _, n = evaluate_sse(
        model.module_, model.rows_, data.valid, clip=dataset.rating_range, compute="reference"
    )
    assert model.best_valid_rmse_ == pytest.approx(np.sqrt(sse / n), rel=1e-5)


def test_fold_in_item_applies_the_same_convolution(dataset) -> None:
    model = DeepRec(**GLOBAL).fit(dataset)
    users, ratings = np.array([0, 2, 3]), np.array([4.0, 2.0, 5.0])
    out = model._fold_in_item(users, ratings)
    x = torch.zeros(1, model.module_.n_inputs)
    x[0, users] = torch.tensor(ratings, dtype=torch.float32)
    with torch.no_grad():
        expected = model.module_(global_conv(x, model.module_.global_kernel_matrix))[0]
        raw = model.module_(x)[0]
    np.testing.assert_allclose(out, expected.double().numpy(), rtol=1e-6)
    assert not np.allclose(out, raw.double().numpy())


@pytest.mark.parametrize("glocal", [False, True])
def test_refit_trains_on_train_and_valid_for_the_chosen_epochs(dataset, tmp_path, glocal) -> None:
    kw = dict(GLOBAL, epochs=6, finetune_epochs=5, early_stopping=10)
    if not glocal:
        kw.update(global_kernel=0, finetune_epochs=0)
    chosen = DeepRec(**kw).fit(dataset)
    model = DeepRec(**kw, refit=True).fit(dataset)
    # the record is the chosen run's; the refit ran that many epochs on every rating
    assert model.best_valid_rmse_ == chosen.best_valid_rmse_
    assert model.refit_["epochs"] == chosen.phase_best_epochs_
    assert len(model.refit_history_) == sum(chosen.phase_best_epochs_)
    assert all(r.valid_rmse is None for r in model.refit_history_)
    n_all = dataset.train.ratings.shape[0] + dataset.valid.ratings.shape[0]
    assert model.train_.nnz == n_all and chosen.train_.nnz < n_all
    assert model.config().refit and model.config().epochs == kw["epochs"]
    test = dataset.to_pandas("test")
    users, items = test["user"].to_numpy(), test["item"].to_numpy()
    pred = model.predict(users, items, clip=False)
    assert not np.allclose(pred, chosen.predict(users, items, clip=False))
    model.save(tmp_path / "m")
    loaded = DeepRec.load(tmp_path / "m")
    assert loaded.refit and loaded.refit_ == model.refit_
    np.testing.assert_array_equal(loaded.predict(users, items, clip=False), pred)


def test_refit_without_validation_is_the_plain_fit(dataset) -> None:
    from dataclasses import replace

    from deeprec.data.dataset import Split

    no_valid = replace(dataset, valid=Split.empty())
    kw = dict(GLOBAL, global_kernel=0, finetune_epochs=0)
    plain = DeepRec(**kw).fit(no_valid)
    refit = DeepRec(**kw, refit=True).fit(no_valid)
    assert not hasattr(refit, "refit_")
    users, items = no_valid.train.users, no_valid.train.items
    np.testing.assert_array_equal(refit.predict(users, items), plain.predict(users, items))


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"global_kernel": 2}, "global_kernel"),  # even
        ({"global_kernel": -1}, "global_kernel"),
        ({"global_kernel": 3, "orientation": "item", "compute": "reference"}, "global_kernel"),
        ({"global_kernel": 3, "finetune_epochs": 5, "compute": "reference"}, "global_kernel"),
        ({"global_kernel": 3, "finetune_epochs": 5, "orientation": "item"}, "global_kernel"),
        ({"finetune_lr": -0.1}, "finetune_lr"),
        ({"finetune_epochs": 1.5}, "finetune_epochs"),
        ({"refit": "yes"}, "refit"),
    ],
)
def test_bad_global_kernel_values_raise_config_error(values: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**values)
