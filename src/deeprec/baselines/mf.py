"""Biased matrix factorisation (Funk SVD as in Koren 2009 / Surprise's SVD), trained by SGD.

    r_hat(u, i) = mu + b_u + b_i + p_u . q_i

Training is Funk's per-rating SGD rule (error times the other factor, minus reg times the own
factor) applied to shuffled mini-batches of ratings at once with ``index_add_``: each rating
contributes exactly its per-rating update, so `lr` and `reg` mean what they mean in Surprise,
and with ``batch_size=1`` the loop is plain SGD. Vectorising over a batch is what makes it fast
in Python. With a validation split the factors of the epoch with the best validation RMSE are
kept and training stops after `patience` epochs without improvement.
"""

from __future__ import annotations

import copy
import time
from typing import Any, ClassVar

import numpy as np
import torch

from deeprec.base import Recommender
from deeprec.baselines._common import (
    check_positive,
    clipped_rmse,
    counts,
    torch_threads,
    validation_split,
)
from deeprec.data.dataset import PreparedDataset
from deeprec.errors import CheckpointError, ConfigError, TrainingError


class BiasedMF(Recommender):
    """Funk-SVD style biased MF with mini-batch SGD and validation early stopping."""

    model_name: ClassVar[str] = "BiasedMF"

    user_factors_: np.ndarray
    item_factors_: np.ndarray
    user_bias_: np.ndarray
    item_bias_: np.ndarray
    history_: list[dict[str, float]]
    best_epoch_: int

    def __init__(
        self,
        n_factors: int = 100,
        lr: float = 0.005,
        reg: float = 0.02,
        reg_bias: float | None = None,
        epochs: int = 20,
        batch_size: int = 256,
        init_std: float = 0.1,
        patience: int | None = 5,
        seed: int = 0,
    ) -> None:
        self.n_factors = n_factors
        self.lr = lr
        self.reg = reg
        self.reg_bias = reg_bias
        self.epochs = epochs
        self.batch_size = batch_size
        self.init_std = init_std
        self.patience = patience
        self.seed = seed

    # ------------------------------------------------------------------ fit
    def _check_params(self) -> None:
        if int(self.n_factors) < 0:
            raise ConfigError(f"n_factors must be >= 0, got {self.n_factors!r}")
        if int(self.epochs) < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs!r}")
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size!r}")
        check_positive("lr", self.lr)
        check_positive("reg", self.reg, allow_zero=True)
        if self.reg_bias is not None:
            check_positive("reg_bias", self.reg_bias, allow_zero=True)
        check_positive("init_std", self.init_std, allow_zero=True)
        if self.patience is not None and int(self.patience) < 1:
            raise ConfigError(f"patience must be >= 1 or None, got {self.patience!r}")

    def _fit_dataset(self, dataset: PreparedDataset) -> None:
        self._check_params()
        with torch_threads(1):
            self._train(dataset)

    def _train(self, dataset: PreparedDataset) -> None:
        gen = torch.Generator().manual_seed(int(self.seed))
        k = int(self.n_factors)
        lr, reg = float(self.lr), float(self.reg)
        reg_b = reg if self.reg_bias is None else float(self.reg_bias)
        mu = float(self.global_mean_)
        P = torch.randn(self.n_users, k, generator=gen) * float(self.init_std)
        Q = torch.randn(self.n_items, k, generator=gen) * float(self.init_std)
        b_u = torch.zeros(self.n_users)
        b_i = torch.zeros(self.n_items)
        part = dataset.train
        users = torch.from_numpy(part.users.astype(np.int64))
        items = torch.from_numpy(part.items.astype(np.int64))
        ratings = torch.from_numpy(part.ratings.astype(np.float32))
        # Rows never rated in training keep all-zero factors: they then predict mu + bias.
        P[torch.from_numpy(counts(part.users, self.n_users) == 0)] = 0.0
        Q[torch.from_numpy(counts(part.items, self.n_items) == 0)] = 0.0

        valid = validation_split(dataset)
        best = float("inf")
        best_state: tuple[torch.Tensor, ...] | None = None
        self.best_epoch_ = int(self.epochs)
        self.history_ = []
        stale = 0
        n, bs = users.shape[0], int(self.batch_size)
        for epoch in range(1, int(self.epochs) + 1):
            start_time = time.perf_counter()
            perm = torch.randperm(n, generator=gen)
            eu, ei, er = users[perm], items[perm], ratings[perm]
            sq_err = 0.0
            for start in range(0, n, bs):
                u, i, r = eu[start : start + bs], ei[start : start + bs], er[start : start + bs]
                pu, qi, bu, bi = P[u], Q[i], b_u[u], b_i[i]
                err = r - (mu + bu + bi + (pu * qi).sum(1))
                sq_err += float(err.square().sum())
                b_u.index_add_(0, u, lr * (err - reg_b * bu))
                b_i.index_add_(0, i, lr * (err - reg_b * bi))
                e = err.unsqueeze(1)
                P.index_add_(0, u, lr * (e * qi - reg * pu))
                Q.index_add_(0, i, lr * (e * pu - reg * qi))
            train_rmse = float(np.sqrt(sq_err / max(n, 1)))
            if not np.isfinite(train_rmse):
                raise TrainingError(
                    f"BiasedMF diverged at epoch {epoch} (training RMSE {train_rmse}); "
                    f"lower lr (now {lr}) or raise reg"
                )
            record = {"epoch": epoch, "train_rmse": train_rmse}
            self._set_arrays(P, Q, b_u, b_i)
            if valid is not None:
                pred = self._predict_indices(valid.users, valid.items)
                record["valid_rmse"] = clipped_rmse(pred, valid.ratings, self.rating_range_)
            record["epoch_seconds"] = time.perf_counter() - start_time
            self.history_.append(record)
            if valid is None:
                continue
            if record["valid_rmse"] < best:
                best, stale = record["valid_rmse"], 0
                best_state = copy.deepcopy((P, Q, b_u, b_i))
                self.best_epoch_ = epoch
            else:
                stale += 1
                if self.patience is not None and stale >= int(self.patience):
                    break
        if best_state is not None:
            self._set_arrays(*best_state)

    def _set_arrays(self, P: Any, Q: Any, b_u: Any, b_i: Any) -> None:
        self.user_factors_ = P.numpy().copy()
        self.item_factors_ = Q.numpy().copy()
        self.user_bias_ = b_u.numpy().copy()
        self.item_bias_ = b_i.numpy().copy()

    # -------------------------------------------------------------- predict
    def _predict_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        dot = np.einsum("ij,ij->i", self.user_factors_[users], self.item_factors_[items])
        return (
            self.global_mean_
            + self.user_bias_[users].astype(np.float64)
            + self.item_bias_[items].astype(np.float64)
            + dot.astype(np.float64)
        )

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        dot = self.user_factors_[users] @ self.item_factors_.T
        return (
            self.global_mean_
            + self.user_bias_[users].astype(np.float64)[:, None]
            + self.item_bias_.astype(np.float64)[None, :]
            + dot.astype(np.float64)
        )

    def _fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """Solve the user's ridge problem for (p_u, b_u) with the item side held fixed.

        The SGD objective charges `reg` per rating, so the penalty is reg * n on p_u and
        reg_bias * n on b_u for a user with n ratings.
        """
        items = np.asarray(items, dtype=np.int64)
        q = self.item_factors_.astype(np.float64)
        b_i = self.item_bias_.astype(np.float64)
        n = items.shape[0]
        if n == 0:
            return self.global_mean_ + b_i
        reg_b = self.reg if self.reg_bias is None else self.reg_bias
        design = np.hstack([q[items], np.ones((n, 1))])
        target = np.asarray(ratings, np.float64) - self.global_mean_ - b_i[items]
        penalty = np.full(design.shape[1], float(self.reg) * n)
        penalty[-1] = float(reg_b) * n
        gram = design.T @ design + np.diag(penalty)
        # A tiny ridge keeps the solve well posed when reg is 0 and n < n_factors.
        gram += 1e-9 * np.eye(gram.shape[0])
        coef = np.linalg.solve(gram, design.T @ target)
        p_u, b_u = coef[:-1], coef[-1]
        return self.global_mean_ + b_u + b_i + q @ p_u

    # ------------------------------------------------------------ save/load
    def _state_dict(self) -> dict[str, Any]:
        return {
            "user_factors": torch.from_numpy(np.ascontiguousarray(self.user_factors_)),
            "item_factors": torch.from_numpy(np.ascontiguousarray(self.item_factors_)),
            "user_bias": torch.from_numpy(np.ascontiguousarray(self.user_bias_)),
            "item_bias": torch.from_numpy(np.ascontiguousarray(self.item_bias_)),
        }

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.user_factors_ = state["user_factors"].numpy()
            self.item_factors_ = state["item_factors"].numpy()
            self.user_bias_ = state["user_bias"].numpy()
            self.item_bias_ = state["item_bias"].numpy()
        except KeyError as exc:
            raise CheckpointError(f"BiasedMF checkpoint lacks {exc}") from exc
        k = int(self.n_factors)
        if self.user_factors_.shape != (self.n_users, k) or self.item_factors_.shape != (
            self.n_items,
            k,
        ):
            raise CheckpointError("BiasedMF checkpoint does not match its id maps or n_factors")

    def _fitted_meta(self) -> dict[str, Any]:
        return {"history": self.history_, "best_epoch": self.best_epoch_}

    def _load_fitted_meta(self, meta: dict[str, Any]) -> None:
        self.history_ = list(meta.get("history", []))
        self.best_epoch_ = int(meta.get("best_epoch", 0))
