"""`DeepRec`: the paper's autoencoder as a scikit-learn-style estimator.

Every TrainConfig key is an explicit keyword, so `get_params`/`set_params`, cloning and grid
search work; `fit` returns self; predictions speak raw ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from deeprec.base import Recommender
from deeprec.baselines.bias import fit_biases, fold_in_bias
from deeprec.data.dataset import PreparedDataset
from deeprec.data.sparse import CSRMatrix
from deeprec.errors import CheckpointError, DataError
from deeprec.model.autoencoder import AutoEncoder
from deeprec.train.config import TrainConfig
from deeprec.train.distributed import current_context, resolve_device
from deeprec.train.evaluation import predict_rows
from deeprec.train.trainer import EpochRecord, OrientedData, Trainer, build_model

_D = TrainConfig()
# Ridge strengths of the centring baseline (BiasOnly's defaults).
CENTER_REG_USER, CENTER_REG_ITEM, CENTER_ITERS = 15.0, 10.0, 10


class DeepRec(Recommender):
    """Deep autoencoder recommender (Kuchaiev & Ginsburg 2017).

    User-based by default: a user's rating vector over all items goes in, the predicted
    ratings over all items come out. ``orientation="item"`` trains on item vectors instead
    (I-AutoRec style). See TrainConfig for the meaning of every keyword.
    """

    model_name: ClassVar[str] = "DeepRec"

    def __init__(
        self,
        hidden: list[int] | tuple[int, ...] = tuple(_D.hidden),
        activation: str = _D.activation,
        last_activation: str = _D.last_activation,
        dropout: float = _D.dropout,
        dropout_placement: str = _D.dropout_placement,
        constrained: bool = _D.constrained,
        orientation: str = _D.orientation,
        center: str = _D.center,
        refeed_steps: int = _D.refeed_steps,
        input_dropout: float = _D.input_dropout,
        input_row_scale: float = _D.input_row_scale,
        rated_indicator: bool = _D.rated_indicator,
        lazy_updates: bool = _D.lazy_updates,
        optimizer: str = _D.optimizer,
        lr: float = _D.lr,
        momentum: float = _D.momentum,
        weight_decay: float = _D.weight_decay,
        decay_biases: bool = _D.decay_biases,
        batch_size: int = _D.batch_size,
        epochs: int = _D.epochs,
        lr_schedule: str = _D.lr_schedule,
        lr_milestones: list[int] | tuple[int, ...] = tuple(_D.lr_milestones),
        lr_gamma: float = _D.lr_gamma,
        early_stopping: int = _D.early_stopping,
        seed: int = _D.seed,
        compute: str = _D.compute,
        precision: str = _D.precision,
        device: str = _D.device,
        eval_batch_size: int = _D.eval_batch_size,
        threads: int = _D.threads,
        reuse_freed_memory: bool = _D.reuse_freed_memory,
        checkpoint_every_epochs: int = _D.checkpoint_every_epochs,
        checkpoint_every_batches: int = _D.checkpoint_every_batches,
        checkpoint_every_minutes: float = _D.checkpoint_every_minutes,
        checkpoint_keep: int = _D.checkpoint_keep,
        verbose: bool = False,
    ) -> None:
        self.hidden = hidden
        self.activation = activation
        self.last_activation = last_activation
        self.dropout = dropout
        self.dropout_placement = dropout_placement
        self.constrained = constrained
        self.orientation = orientation
        self.center = center
        self.refeed_steps = refeed_steps
        self.input_dropout = input_dropout
        self.input_row_scale = input_row_scale
        self.rated_indicator = rated_indicator
        self.lazy_updates = lazy_updates
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.decay_biases = decay_biases
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr_schedule = lr_schedule
        self.lr_milestones = lr_milestones
        self.lr_gamma = lr_gamma
        self.early_stopping = early_stopping
        self.seed = seed
        self.compute = compute
        self.precision = precision
        self.device = device
        self.eval_batch_size = eval_batch_size
        self.threads = threads
        self.reuse_freed_memory = reuse_freed_memory
        self.checkpoint_every_epochs = checkpoint_every_epochs
        self.checkpoint_every_batches = checkpoint_every_batches
        self.checkpoint_every_minutes = checkpoint_every_minutes
        self.checkpoint_keep = checkpoint_keep
        self.verbose = verbose

    # ------------------------------------------------------------ config
    @classmethod
    def from_config(cls, config: TrainConfig, **extra: Any) -> DeepRec:
        return cls(**config.to_dict(), **extra)

    def config(self) -> TrainConfig:
        """The validated TrainConfig of these hyper-parameters (raises ConfigError)."""
        values = {k: v for k, v in self.get_params().items() if k in TrainConfig.option_names()}
        values["hidden"] = list(values["hidden"])
        values["lr_milestones"] = list(values["lr_milestones"])
        return TrainConfig.from_dict(values, source="DeepRec")

    # --------------------------------------------------------------- fit
    def _fit_dataset(
        self, dataset: PreparedDataset, on_epoch_end: Any = None, checkpointer: Any = None
    ) -> None:
        config = self.config()
        if config.threads:
            torch.set_num_threads(config.threads)
        # [ddp/device] train on the configured device; data-parallel when a process group is
        # up (torchrun: see deeprec.train.distributed).
        device = resolve_device(config.device)
        dist = current_context(device)
        torch.manual_seed(config.seed)
        if dataset.train.ratings.shape[0] == 0:
            raise DataError("cannot train on an empty training split")
        self._fit_center(dataset, config.center)
        data = self._centered_data(dataset, config.orientation)
        self.module_ = build_model(config, data.train.shape[1]).to(device)
        self.rows_ = data.train
        trainer = Trainer(
            self.module_,
            config,
            data,
            # residuals are not on the rating scale: the logged validation RMSE is unclipped
            rating_range=None if config.center == "bias" else dataset.rating_range,
            progress=self.verbose and (dist is None or dist.is_main),
            on_epoch_end=on_epoch_end,
            dist=dist,
        )
        if checkpointer is not None:  # reliability (issue 8): checkpoints and --resume
            checkpointer.attach(trainer)
        result = trainer.fit()
        self.module_ = self.module_.cpu()  # [device] a fitted estimator predicts/saves on CPU
        self.history_: list[EpochRecord] = result.history
        self.best_epoch_ = result.best_epoch
        self.best_valid_rmse_ = result.best_valid_rmse
        self.module_.eval()

    # ------------------------------------------------------------ centring
    def _fit_center(self, dataset: PreparedDataset, center: str) -> None:
        """center="bias": fit mu + b_u + b_i on the training split (else all zeros)."""
        if center == "bias":
            part = dataset.train
            self.center_mean_ = self.global_mean_
            self.center_user_bias_, self.center_item_bias_ = fit_biases(
                part.users,
                part.items,
                part.ratings,
                self.center_mean_,
                (self.n_users, self.n_items),
                reg_user=CENTER_REG_USER,
                reg_item=CENTER_REG_ITEM,
                n_iter=CENTER_ITERS,
            )
        else:
            self._fit_center_none()

    def _centered(self, matrix: CSRMatrix) -> CSRMatrix:
        """A user x item CSR with the baseline subtracted from every stored rating."""
        if self.center != "bias":
            return matrix
        rows = np.repeat(np.arange(matrix.shape[0]), matrix.row_lengths())
        base = self._baseline(rows, matrix.indices.astype(np.int64))
        values = (matrix.values.astype(np.float64) - base).astype(np.float32)
        return CSRMatrix(matrix.indptr, matrix.indices, values, matrix.shape)

    def _centered_data(self, dataset: PreparedDataset, orientation: str) -> OrientedData:
        mats = {name: self._centered(dataset.csr(name)) for name in ("train", "valid", "test")}
        if orientation == "item":
            mats = {name: m.transpose() for name, m in mats.items()}
        return OrientedData(**mats)

    def _baseline(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.center_mean_ + self.center_user_bias_[users] + self.center_item_bias_[items]

    def fit(
        self,
        train: Any,
        valid: Any = None,
        *,
        columns: dict[str, str] | None = None,
        on_epoch_end: Any = None,
        checkpointer: Any = None,
    ) -> DeepRec:
        """Train on a DataFrame (user, item, rating), a PreparedDataset, or scikit-learn's
        (X, y); `columns` names the tables' columns (see deeprec.frames).

        `on_epoch_end(record, improved)` is called after every epoch (used by run dirs);
        `checkpointer` (train.checkpoint.Checkpointer) writes checkpoints and resumes.
        """
        dataset = self._input_dataset(train, valid, columns)
        self._set_index(dataset)
        self._fit_dataset(dataset, on_epoch_end=on_epoch_end, checkpointer=checkpointer)
        return self

    # ----------------------------------------------------------- predict
    def _oriented_outputs(self, rows: np.ndarray) -> torch.Tensor:
        return predict_rows(self.module_, self.rows_, rows, batch_size=self.eval_batch_size)

    def _predict_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        rows, cols = (users, items) if self.orientation == "user" else (items, users)
        unique, inverse = np.unique(rows, return_inverse=True)
        out = np.empty(rows.shape[0], dtype=np.float64)
        chunk = max(1, self.eval_batch_size)
        order = np.argsort(inverse, kind="stable")
        sorted_inv = inverse[order]
        for begin in range(0, unique.shape[0], chunk):
            part = unique[begin : begin + chunk]
            outputs = self._oriented_outputs(part).double().numpy()
            lo, hi = np.searchsorted(sorted_inv, [begin, begin + part.shape[0]])
            sel = order[lo:hi]
            out[sel] = outputs[inverse[sel] - begin, cols[sel]]
        if self.center == "bias":
            out += self._baseline(users, items)
        return out

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        if self.orientation == "user":
            scores = self._oriented_outputs(users).double().numpy()
        else:
            scores = self._item_oriented_scores(users)
        if self.center == "bias":
            scores += self._baseline(users[:, None], np.arange(self.n_items)[None, :])
        return scores

    def _item_oriented_scores(self, users: np.ndarray) -> np.ndarray:
        scores = np.empty((users.shape[0], self.n_items), dtype=np.float64)
        all_items = np.arange(self.n_items)
        for begin in range(0, self.n_items, self.eval_batch_size):
            part = all_items[begin : begin + self.eval_batch_size]
            scores[:, part] = self._oriented_outputs(part).double().numpy()[:, users].T
        return scores

    @torch.no_grad()
    def _fold_in_vector(self, index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        x = torch.zeros(1, self.module_.n_inputs)
        x[0, torch.as_tensor(index, dtype=torch.long)] = torch.as_tensor(
            ratings, dtype=torch.float32
        )
        self.module_.eval()
        return self.module_(x)[0].double().numpy()

    def _fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """Encode a new user's ratings and read predictions off the output (user-based)."""
        if self.orientation != "user":
            raise DataError(
                "an item-based model cannot fold in new users (its outputs are users); "
                "fold in new items instead, or train with orientation='user'"
            )
        items = np.asarray(items, dtype=np.int64)
        base = self.user_baseline(items, ratings)
        if base is None:
            return self._fold_in_vector(items, ratings)
        resid = np.asarray(ratings, np.float64) - base[items]
        return self._fold_in_vector(items, resid) + base

    def user_baseline(
        self, items: np.ndarray, ratings: np.ndarray, user: int | None = None
    ) -> np.ndarray | None:
        """center="bias": mu + b_u + b_i over all items (None when uncentred), for a known
        user index (its trained b_u) or a new user (b_u folded in from `ratings`). A caller
        that runs the module itself (the HTTP batcher) feeds r - baseline[items] and adds the
        baseline to the output."""
        if self.center != "bias":
            return None
        mu, b_i = self.center_mean_, self.center_item_bias_
        if user is None:
            b_u = fold_in_bias(np.asarray(items, np.int64), ratings, mu, b_i, CENTER_REG_USER)
        else:
            b_u = float(self.center_user_bias_[user])
        return mu + b_u + b_i

    def _fold_in_item(self, users: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """Encode a new item's ratings by known users (item-based models only)."""
        if self.orientation != "item":
            raise DataError(
                "a user-based model cannot fold in new items (its inputs are items); "
                "fold in new users instead, or train with orientation='item'"
            )
        users = np.asarray(users, dtype=np.int64)
        if self.center != "bias":
            return self._fold_in_vector(users, ratings)
        mu, b_u = self.center_mean_, self.center_user_bias_
        b_i = fold_in_bias(users, ratings, mu, b_u, CENTER_REG_ITEM)
        resid = np.asarray(ratings, np.float64) - (mu + b_u[users] + b_i)
        return self._fold_in_vector(users, resid) + mu + b_u + b_i

    # ---------------------------------------------------------- save/load
    def _state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"module.{k}": v for k, v in self.module_.state_dict().items()}
        if self.center == "bias":
            state["center.global_mean"] = torch.tensor([self.center_mean_], dtype=torch.float64)
            state["center.user_bias"] = torch.from_numpy(
                np.ascontiguousarray(self.center_user_bias_)
            )
            state["center.item_bias"] = torch.from_numpy(
                np.ascontiguousarray(self.center_item_bias_)
            )
        return state

    def _load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not any(k.startswith("center.") for k in state):
            self.center = "none"  # saved before `center` existed (or saved uncentred)
        config = self.config()
        n_inputs = self.n_items if config.orientation == "user" else self.n_users
        _check_encoder_shapes(state, n_inputs, config.hidden)  # before allocating (issue 8)
        module = build_model(config, n_inputs)
        weights = {
            k.removeprefix("module."): v for k, v in state.items() if k.startswith("module.")
        }
        expected = set(module.state_dict())
        if set(weights) != expected:
            missing = sorted(expected - set(weights))
            extra = sorted(set(weights) - expected)
            raise CheckpointError(
                f"checkpoint does not match the architecture {module.architecture()}: "
                f"missing {missing[:5]}, unexpected {extra[:5]}"
            )
        try:
            module.load_state_dict(weights)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint shapes do not match the config: {exc}") from None
        module.eval()
        self.module_ = module
        self._load_center(state, config.center)
        rows = self._centered(self.train_)
        self.rows_ = rows if config.orientation == "user" else rows.transpose()

    def _load_center(self, state: dict[str, torch.Tensor], center: str) -> None:
        if center != "bias":
            self._fit_center_none()
            return
        try:
            mean = state["center.global_mean"]
            user_bias = state["center.user_bias"].numpy().astype(np.float64)
            item_bias = state["center.item_bias"].numpy().astype(np.float64)
        except KeyError as exc:
            raise CheckpointError(f"center='bias' checkpoint lacks {exc}") from None
        if user_bias.shape != (self.n_users,) or item_bias.shape != (self.n_items,):
            raise CheckpointError("the centring biases do not match the model's id maps")
        self.center_mean_ = float(mean.reshape(-1)[0])
        self.center_user_bias_, self.center_item_bias_ = user_bias, item_bias

    def _fit_center_none(self) -> None:
        self.center_mean_ = 0.0
        self.center_user_bias_ = np.zeros(self.n_users)
        self.center_item_bias_ = np.zeros(self.n_items)

    def _fitted_meta(self) -> dict[str, Any]:
        history = [r.to_dict() for r in getattr(self, "history_", [])]
        return {
            "best_epoch": getattr(self, "best_epoch_", None),
            "best_valid_rmse": getattr(self, "best_valid_rmse_", None),
            "history": history,
            "architecture": self.module_.architecture(),
        }

    def _load_fitted_meta(self, meta: dict[str, Any]) -> None:
        self.best_epoch_ = meta.get("best_epoch")
        self.best_valid_rmse_ = meta.get("best_valid_rmse")
        self.history_ = [EpochRecord(**r) for r in meta.get("history", [])]

    @classmethod
    def load(cls, path: str | Path) -> DeepRec:  # type: ignore[override]
        return super().load(path)  # type: ignore[return-value]

    @property
    def module(self) -> AutoEncoder:
        return self.module_


def _check_encoder_shapes(state: dict[str, torch.Tensor], n_inputs: int, hidden: list[int]) -> None:
    """Compare the file's encoder matrices with the architecture model.json claims *before*
    building it, so an edited model.json cannot make loading allocate huge layers."""
    sizes = [n_inputs, *hidden]
    for i in range(len(hidden)):
        tensor = state.get(f"module.encoder_weights.{i}")
        want = (sizes[i + 1], sizes[i])
        if tensor is None or tuple(tensor.shape) != want:
            got = None if tensor is None else tuple(tensor.shape)
            raise CheckpointError(
                f"checkpoint shapes do not match the config: encoder layer {i} in the weights "
                f"is {got}, but model.json describes {want}"
            )
