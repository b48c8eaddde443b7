"""`DeepRec`: the paper's autoencoder as a scikit-learn-style estimator.

Every TrainConfig key is an explicit keyword, so `get_params`/`set_params`, cloning and grid
search work; `fit` returns self; predictions speak raw ids.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from deeprec.base import Recommender
from deeprec.baselines.bias import fit_biases, fold_in_bias
from deeprec.data.carve import with_carved_validation, with_validation_merged
from deeprec.data.dataset import PreparedDataset
from deeprec.data.prediction_inputs import check_source, coo
from deeprec.data.sparse import CSRMatrix
from deeprec.errors import CheckpointError, ConfigError, DataError, DataWarning
from deeprec.model.autoencoder import AutoEncoder
from deeprec.selection import SEARCHED_KEYS, select
from deeprec.teacher import Teacher
from deeprec.train.config import TrainConfig
from deeprec.train.distributed import current_context, resolve_device
from deeprec.train.evaluation import RatingScale, predict_rows
from deeprec.train.global_finetune import convolved_rows, finetune, fold_in_input
from deeprec.train.library_state import library_state
from deeprec.train.trainer import EpochRecord, OrientedData, Trainer, build_model

_D = TrainConfig()
Biases = tuple[float, np.ndarray, np.ndarray]  # (mu, b_u over users, b_i over items)
# Ridge strengths of the centring baseline (BiasOnly's defaults).
CENTER_REG_USER, CENTER_REG_ITEM, CENTER_ITERS = 15.0, 10.0, 10


class DeepRec(Recommender):
    """Deep autoencoder recommender (Kuchaiev & Ginsburg 2017).

    A user's rating vector over all items goes in (``orientation="user"``), or an item's
    over all users (``"item"``, I-AutoRec style); predicted ratings come out. See TrainConfig
    for the meaning of every keyword.

    With none of the model keywords given (architecture, orientation, centring, optimiser,
    L2, epochs, input dropout, second phase: deeprec.selection.SEARCHED_KEYS), the model is
    chosen from the data at `fit`: a few fixed candidates are scored on the validation split
    (carved from the training data, `valid_fraction`, when none is given) and the best is
    kept as fitted;
    `selection_` says what was tried and why the winner won. Giving any model keyword pins
    the whole model: exactly that, with TrainConfig's defaults for the keywords left out.
    `config_` is the configuration that was trained.

    `predict_inputs` says which ratings a known user's (user-based) or item's (item-based)
    input row holds at predict/recommend/score time: ``"train+valid"`` adds the validation
    ratings (given, or carved) to the training ones, without retraining; ``"train"`` keeps
    the training ratings only. `predict_center` says where the centring biases used at
    prediction time come from: re-estimated on train + validation (``"train+valid"``), or
    the training split's, as in training (``"train"``). The defaults, both
    ``"train+valid"``, were better on test on 8 of 9 sets of docs/results/generalization.md
    (ML-1M time split: 0.8858 -> 0.8621; the re-fitted biases carry most of it; the dense
    cut lost 0.003). Both may
    be changed after `fit` (`set_params`). `refit` goes further: once the model (and its
    best epoch) is chosen on validation, it is trained again on train + validation for that
    many epochs, and that model is kept (then there is no validation left to read). None
    (the default) refits a model chosen from the data and not a pinned one; True or False
    decide for both.
    Test ratings are never inputs: the model keeps only its fit's training and validation
    splits (deeprec.data.prediction_inputs). ``score(dataset, "valid")`` always reads training
    inputs, so that the validation number stays honest.
    """

    model_name: ClassVar[str] = "DeepRec"

    def __init__(
        self,
        hidden: list[int] | tuple[int, ...] | None = None,
        activation: str | None = None,
        last_activation: str = _D.last_activation,
        dropout: float | None = None,
        dropout_placement: str = _D.dropout_placement,
        constrained: bool = _D.constrained,
        orientation: str | None = None,
        center: str | None = None,
        standardize: bool = _D.standardize,
        refeed_steps: int = _D.refeed_steps,
        input_dropout: float | None = None,
        input_row_scale: float = _D.input_row_scale,
        rated_indicator: bool = _D.rated_indicator,
        weight_kernel_dim: int = _D.weight_kernel_dim,
        kernel_sparsity: float = _D.kernel_sparsity,
        global_kernel: int = _D.global_kernel,
        finetune_epochs: int | None = None,
        finetune_lr: float | None = None,
        refit: bool | None = None,
        teacher: str = _D.teacher,
        teacher_weight: float = _D.teacher_weight,
        optimizer: str | None = None,
        lr: float | None = None,
        momentum: float = _D.momentum,
        weight_decay: float | None = None,
        decay_biases: bool = _D.decay_biases,
        batch_size: int | None = None,
        lbfgs_iterations: int = _D.lbfgs_iterations,
        epochs: int | None = None,
        lr_schedule: str = _D.lr_schedule,
        lr_milestones: list[int] | tuple[int, ...] = tuple(_D.lr_milestones),
        lr_gamma: float = _D.lr_gamma,
        early_stopping: int | None = None,
        seed: int = _D.seed,
        compute: str = _D.compute,
        precision: str = _D.precision,
        device: str = _D.device,
        eval_batch_size: int = _D.eval_batch_size,
        threads: int = _D.threads,
        output_strategy: str = _D.output_strategy,
        input_strategy: str = _D.input_strategy,
        cuda_graphs: bool = _D.cuda_graphs,
        checkpoint_every_epochs: int = _D.checkpoint_every_epochs,
        checkpoint_every_batches: int = _D.checkpoint_every_batches,
        checkpoint_every_minutes: float = _D.checkpoint_every_minutes,
        checkpoint_keep: int = _D.checkpoint_keep,
        valid_fraction: float = 0.1,
        predict_inputs: str = "train+valid",
        predict_center: str = "train+valid",
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
        self.standardize = standardize
        self.refeed_steps = refeed_steps
        self.input_dropout = input_dropout
        self.input_row_scale = input_row_scale
        self.rated_indicator = rated_indicator
        self.weight_kernel_dim = weight_kernel_dim
        self.kernel_sparsity = kernel_sparsity
        self.global_kernel = global_kernel
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.refit = refit
        self.teacher = teacher
        self.teacher_weight = teacher_weight
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.decay_biases = decay_biases
        self.batch_size = batch_size
        self.lbfgs_iterations = lbfgs_iterations
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
        self.output_strategy = output_strategy
        self.input_strategy = input_strategy
        self.cuda_graphs = cuda_graphs
        self.checkpoint_every_epochs = checkpoint_every_epochs
        self.checkpoint_every_batches = checkpoint_every_batches
        self.checkpoint_every_minutes = checkpoint_every_minutes
        self.checkpoint_keep = checkpoint_keep
        self.valid_fraction = valid_fraction
        self.predict_inputs = predict_inputs
        self.predict_center = predict_center
        self.verbose = verbose

    # ------------------------------------------------------------ config
    @classmethod
    def from_config(cls, config: TrainConfig, **extra: Any) -> DeepRec:
        return cls(**config.to_dict(), **extra)

    def pinned(self) -> dict[str, Any]:
        """The searched settings given explicitly (not None)."""
        return {k: getattr(self, k) for k in SEARCHED_KEYS if getattr(self, k) is not None}

    def needs_selection(self) -> bool:
        """True when no model setting was given: the model is then chosen from the data.
        Any given setting pins the whole model (TrainConfig defaults for the rest)."""
        return not self.pinned()

    def config(self, settings: dict[str, Any] | None = None) -> TrainConfig:
        """The validated TrainConfig of these hyper-parameters (raises ConfigError): the
        fitted one after `fit`; before, the keywords with `settings` filling the ones left
        at None (every searched keyword must then be set)."""
        if settings is None and hasattr(self, "config_"):
            return self.config_
        values = {k: v for k, v in self.get_params().items() if k in TrainConfig.option_names()}
        values.update(settings or {})
        missing = [k for k in SEARCHED_KEYS if values.get(k) is None]
        if missing and len(missing) < len(SEARCHED_KEYS):  # a pinned model: defaults fill in
            values.update({k: getattr(_D, k) for k in missing})
        elif missing:
            raise ConfigError(
                f"DeepRec: {', '.join(missing)} are chosen from the data at fit(); "
                "set them explicitly to build a config before fitting"
            )
        if values.get("refit") is None:  # auto: `fit` decides (refits()); _refit records it
            values["refit"] = False
        values["hidden"] = list(values["hidden"])
        values["lr_milestones"] = list(values["lr_milestones"])
        return TrainConfig.from_dict(values, source="DeepRec")

    @property
    def _orientation(self) -> str:
        return self.config().orientation

    @property
    def _center(self) -> str:
        return self.config().center

    # --------------------------------------------------------------- fit
    def _fit_dataset(
        self,
        dataset: PreparedDataset,
        on_epoch_end: Any = None,
        checkpointer: Any = None,
        echo: Any = None,
    ) -> None:
        if dataset.train.ratings.shape[0] == 0:
            raise DataError("cannot train on an empty training split")
        if self.teacher and self.needs_selection():
            raise ConfigError(
                "teacher distils into a pinned model: give the model's settings too (a "
                "config, a preset or model keywords)"
            )
        vars(self).pop("teacher_", None)
        try:
            if not self.needs_selection():
                self._fit_config(dataset, self.config({}), on_epoch_end, checkpointer)
            else:
                dataset = self._select(dataset, echo)
            if self.refits() and dataset.valid.ratings.shape[0]:
                self._refit(dataset)
        finally:  # only the student is kept, also when the fit fails
            teacher = vars(self).pop("_teacher", None)
        if teacher is not None:
            self.teacher_ = teacher.summary()

    def refits(self) -> bool:
        """Whether `fit` ends with a refit on train + validation: `refit` when given; else
        (None) on for a model chosen from the data and off for a pinned one. Measured on the
        data-chosen defaults it was better on test on every set tried
        (docs/results/generalization.md); on one pinned preset it was not."""
        return self.needs_selection() if self.refit is None else bool(self.refit)

    def _refit(self, dataset: PreparedDataset) -> None:
        """refit: the chosen settings and seed trained again on train + validation for the
        epoch counts validation chose (pre-training and, with a global kernel, fine-tuning;
        no validation is left, so the last epoch is kept). The chosen run's history,
        validation RMSE, config and selection stay the record; `refit_` says what ran."""
        epochs = list(getattr(self, "phase_best_epochs_", None) or [self.best_epoch_])
        if any(e is None for e in epochs):
            return
        config = self.config()
        fixed = replace(
            config,
            epochs=int(epochs[0]),
            finetune_epochs=int(epochs[1]) if len(epochs) > 1 else config.finetune_epochs,
            early_stopping=0,
            refit=False,
        )
        record = (self.history_, self.best_epoch_, self.best_valid_rmse_, epochs)
        merged = with_validation_merged(dataset)
        teacher = getattr(self, "_teacher", None)
        if teacher is not None:  # the student's refit distils from the refitted teacher
            teacher.refit(dataset)
        self._set_index(merged)  # predictions read every rating the fit was given
        self._fit_config(merged, fixed)
        self.refit_history_ = self.history_
        self.history_, self.best_epoch_, self.best_valid_rmse_, self.phase_best_epochs_ = record
        self.config_ = replace(config, refit=True)  # `--config RUN/config.yaml` refits too
        self.refit_ = {"epochs": epochs, "ratings": int(merged.train.ratings.shape[0])}
        self._drop_prediction_cache()

    def _select(self, dataset: PreparedDataset, echo: Any = None) -> PreparedDataset:
        """Choose among deeprec.selection's candidates on validation; keep the winner.
        Returns the dataset it chose on (with the carved validation split, if any)."""
        valid_source = "the given validation split"
        if dataset.valid.ratings.shape[0] == 0:
            dataset = with_carved_validation(dataset, self.valid_fraction, self.seed)
            valid_source = (
                f"a seeded {self.valid_fraction:.0%} of the training ratings (every user and "
                "item keeps one)"
            )
        if echo is None and self.verbose:
            echo = print

        def fit_candidate(settings: dict[str, Any]) -> DeepRec:
            model = DeepRec(**{**self.get_params(), **settings, "verbose": False})
            model._set_index(dataset)
            model._fit_config(dataset, model.config({}))
            return model

        winner, report = select(fit_candidate, self.pinned(), valid_source=valid_source, echo=echo)
        if echo is not None:
            for line in report.lines():
                echo(line)
        fitted = {k: v for k, v in vars(winner).items() if k.endswith("_")}
        vars(self).update(fitted)
        self.selection_ = report.to_dict()
        return dataset

    def _fit_config(
        self,
        dataset: PreparedDataset,
        config: TrainConfig,
        on_epoch_end: Any = None,
        checkpointer: Any = None,
    ) -> None:
        """Train exactly `config` (every setting resolved) on the dataset."""
        self.config_ = config
        # [ddp/device] train on the configured device; data-parallel when a process group is
        # up (torchrun: see deeprec.train.distributed).
        device = resolve_device(config.device)
        dist = current_context(device)
        self._fit_center(dataset, config.center, config.standardize)
        data = self._centered_data(dataset, config.orientation)
        if config.teacher:
            data = replace(data, teacher=self._teacher_targets(dataset, config))
        with library_state(config.threads, config.seed):
            n_rows, n_inputs = data.train.shape
            self.module_ = build_model(config, n_inputs, n_rows).to(device)
            self._train(dataset, config, data, dist, on_epoch_end, checkpointer)
        self.module_ = self.module_.cpu()  # [device] a fitted estimator predicts/saves on CPU
        self.module_.eval()
        self._drop_prediction_cache()

    def _trainer(self, dataset, config, data, dist, on_epoch_end) -> Trainer:
        return Trainer(
            self.module_,
            config,
            data,
            # validation RMSE: outputs mapped back to ratings and clipped, for any centring
            rating_range=dataset.rating_range,
            rating_scale=self._rating_scale(config.orientation),
            progress=self.verbose and (dist is None or dist.is_main),
            on_epoch_end=on_epoch_end,
            dist=dist,
        )

    def _train(self, dataset, config, data, dist, on_epoch_end, checkpointer) -> None:
        if dist is not None and config.teacher:
            raise ConfigError("teacher (distillation) is not supported with distributed training")
        trainer = self._trainer(dataset, config, data, dist, on_epoch_end)
        if checkpointer is not None:  # reliability (issue 8): checkpoints and --resume
            checkpointer.attach(trainer)
        result = trainer.fit()
        self.history_: list[EpochRecord] = list(result.history)
        self.best_epoch_ = result.best_epoch
        self.best_valid_rmse_ = result.best_valid_rmse
        self.phase_best_epochs_ = [result.best_epoch]
        if config.global_kernel:  # GLocal-K: fine-tune on the convolved matrix
            if dist is not None:
                raise ConfigError("global_kernel is not supported with distributed training")
            tuned = finetune(
                self.module_,
                config,
                data,
                rating_range=dataset.rating_range,
                rating_scale=self._rating_scale(config.orientation),
                first_epoch=len(result.history) + 1,
                on_epoch_end=on_epoch_end,
            )
            self.history_ += tuned.history
            self.best_epoch_ = tuned.best_epoch
            self.best_valid_rmse_ = tuned.best_valid_rmse
            assert tuned.best_epoch is not None
            self.phase_best_epochs_.append(tuned.best_epoch - len(result.history))  # 1-based
        elif config.finetune_epochs:
            if dist is not None:
                raise ConfigError("a second phase (finetune_epochs) is not run under torchrun")
            self._second_phase(dataset, config, data, len(result.history), on_epoch_end)

    def _second_phase(self, dataset, config, data, done: int, on_epoch_end) -> None:
        """finetune_epochs without a global kernel: continue from the best weights at
        finetune_lr with a fresh optimizer, early-stopped on validation. Kept only if it
        beats the first phase on validation (else phase 2 counts 0 epochs); without
        validation (the refit) all its epochs run and the last is kept."""
        first_state = copy.deepcopy(self.module_.state_dict())
        second = replace(
            config,
            lr=config.finetune_lr or config.lr,
            epochs=config.finetune_epochs,
            lr_schedule="none",
        )
        trainer = self._trainer(dataset, second, data, None, on_epoch_end)
        result = trainer.fit()
        for record in result.history:  # numbered after the first phase's epochs
            record.epoch += done
        first = self.best_valid_rmse_
        gained = result.best_valid_rmse is None or (
            first is not None and result.best_valid_rmse < first
        )
        self.history_ += result.history
        if gained and result.best_epoch is not None:
            self.best_epoch_ = result.best_epoch + done
            self.best_valid_rmse_ = result.best_valid_rmse
            self.phase_best_epochs_.append(result.best_epoch)
        else:
            self.module_.load_state_dict(first_state)
            self.phase_best_epochs_.append(0)

    def _teacher_targets(self, dataset: PreparedDataset, config: TrainConfig) -> torch.Tensor:
        """The teacher's mean prediction of every cell as the network's targets: minus the
        training centring, over its scale, in the model's orientation (deeprec.teacher).
        The teacher is fitted at the first call of a fit (and refitted by _refit)."""
        teacher = getattr(self, "_teacher", None)
        if teacher is None:
            echo = print if self.verbose else None
            teacher = Teacher(config.teacher, _teacher_member, echo=echo).fit(dataset)
            self._teacher = teacher
        targets = teacher.predictions().astype(np.float64)
        if config.center == "bias":
            users = np.arange(dataset.n_users)[:, None]
            items = np.arange(dataset.n_items)[None, :]
            targets -= self._baseline(users, items, self._train_biases())
        targets /= self._scale
        if config.orientation == "item":
            targets = targets.T
        return torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))

    # ------------------------------------------------------------ centring
    def _fit_center(self, dataset: PreparedDataset, center: str, standardize: bool) -> None:
        """center="bias": fit mu + b_u + b_i on the training split (else all zeros);
        standardize: the spread of what the network then sees becomes its unit."""
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
        self.center_scale_ = 1.0
        if standardize:
            part = dataset.train
            base = self._baseline(part.users, part.items, self._train_biases())
            seen = part.ratings.astype(np.float64) - base
            spread = float(seen.std())
            self.center_scale_ = spread if np.isfinite(spread) and spread > 1e-12 else 1.0

    def _centered(self, matrix: CSRMatrix, biases: Biases) -> CSRMatrix:
        """A user x item CSR of what the network sees: (rating - baseline) / scale."""
        scale = self._scale
        if self._center != "bias" and scale == 1.0:
            return matrix
        rows = np.repeat(np.arange(matrix.shape[0]), matrix.row_lengths())
        base = self._baseline(rows, matrix.indices.astype(np.int64), biases)
        values = ((matrix.values.astype(np.float64) - base) / scale).astype(np.float32)
        return CSRMatrix(matrix.indptr, matrix.indices, values, matrix.shape)

    @property
    def _scale(self) -> float:
        return float(getattr(self, "center_scale_", 1.0))

    def _centered_data(self, dataset: PreparedDataset, orientation: str) -> OrientedData:
        """Training rows as the network sees them; validation and test stay raw ratings
        (validation is scored on the rating scale through _rating_scale)."""
        mats = {
            "train": self._centered(dataset.csr("train"), self._train_biases()),
            "valid": dataset.csr("valid"),
            "test": dataset.csr("test"),
        }
        if orientation == "item":
            mats = {name: m.transpose() for name, m in mats.items()}
        return OrientedData(**mats)

    def _rating_scale(self, orientation: str) -> RatingScale:
        """Outputs -> ratings for validation: output * scale + mu + b_row + b_col."""
        rows, cols = self.center_user_bias_, self.center_item_bias_
        if orientation == "item":
            rows, cols = cols, rows
        return RatingScale(self._scale, self.center_mean_, rows, cols)

    def _baseline(
        self, users: np.ndarray, items: np.ndarray, biases: Biases | None = None
    ) -> np.ndarray:
        """mu + b_u + b_i: of `biases`, else of the prediction-time biases."""
        mean, user_bias, item_bias = self.prediction_biases() if biases is None else biases
        return mean + user_bias[users] + item_bias[items]

    def _train_biases(self) -> Biases:
        """The centring the network was trained with (fitted on the training split)."""
        return self.center_mean_, self.center_user_bias_, self.center_item_bias_

    # ------------------------------------------------- prediction-time inputs
    def input_ratings(self) -> CSRMatrix:
        """Users x items ratings the input rows are built from: training, plus validation
        when ``predict_inputs="train+valid"``."""
        if check_source("predict_inputs", self.predict_inputs) == "train":
            return self.train_
        return self.known_ratings()

    def prediction_biases(self) -> Biases:
        """(mu, b_u, b_i) that centre inputs and un-centre outputs at prediction time: the
        training ones, or with ``predict_center="train+valid"`` (center="bias") re-fitted
        on train + validation with the same ridge strengths."""
        return self._prediction()[1]

    @property
    def rows_(self) -> CSRMatrix:
        """The input rows as the network reads them (oriented, centred, scaled)."""
        return self._prediction()[0]

    def _prediction(self) -> tuple[CSRMatrix, Biases]:
        key = (self.predict_inputs, self.predict_center)
        cached = vars(self).get("_prediction_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        biases = self._train_biases()
        valid = getattr(self, "valid_", None)
        rebias = check_source("predict_center", self.predict_center) == "train+valid"
        if rebias and self._center == "bias" and valid is not None and valid.nnz:
            biases = self._biases_on(self.known_ratings())
        rows = self._centered(self.input_ratings(), biases)
        if self._orientation == "item":
            rows = rows.transpose()
        if self.config().global_kernel:  # the rows as the fine-tuned model reads them
            rows = convolved_rows(self.module_, rows)
        vars(self)["_prediction_cache"] = (key, (rows, biases))
        return rows, biases

    def _biases_on(self, ratings: CSRMatrix) -> Biases:
        """mu, b_u, b_i fitted on `ratings` as _fit_center fits them on training."""
        users, items, values = coo(ratings)
        mean = float(values.astype(np.float64).mean())
        user_bias, item_bias = fit_biases(
            users,
            items,
            values,
            mean,
            (self.n_users, self.n_items),
            reg_user=CENTER_REG_USER,
            reg_item=CENTER_REG_ITEM,
            n_iter=CENTER_ITERS,
        )
        return mean, user_bias, item_bias

    def _drop_prediction_cache(self) -> None:
        vars(self).pop("_prediction_cache", None)

    def score(self, test: Any, y: Any = None, split: str = "test", **kwargs: Any) -> Any:
        """Recommender.score; the validation split of a dataset is scored from training
        inputs only (the validation ratings cannot be inputs to their own scoring). After a
        refit the weights have trained on those ratings: that is warned about, and
        `best_valid_rmse_` stays the honest validation number."""
        name = y if isinstance(y, str) else split
        if not (isinstance(test, PreparedDataset) and name == "valid"):
            return super().score(test, y, split, **kwargs)
        if getattr(self, "refit_", None):
            warnings.warn(
                "this model was retrained on train + validation (refit), so its score on the "
                "validation split is not a validation score; best_valid_rmse_ "
                f"({self.best_valid_rmse_:.4f}) is, from the fit that chose the model",
                DataWarning,
                stacklevel=2,
            )
        saved = self.predict_inputs, self.predict_center
        self.predict_inputs = self.predict_center = "train"
        try:
            return super().score(test, y, split, **kwargs)
        finally:
            self.predict_inputs, self.predict_center = saved

    def fit(
        self,
        train: Any,
        valid: Any = None,
        *,
        columns: dict[str, str] | None = None,
        on_epoch_end: Any = None,
        checkpointer: Any = None,
        echo: Any = None,
    ) -> DeepRec:
        """Train on a DataFrame (user, item, rating), a PreparedDataset, or scikit-learn's
        (X, y); `columns` names the tables' columns (see deeprec.frames).

        `on_epoch_end(record, improved)` is called after every epoch (used by run dirs);
        `checkpointer` (train.checkpoint.Checkpointer) writes checkpoints and resumes; both
        apply to a fully specified model, not to a selection. `echo(line)` receives the
        selection's report (print when `verbose`).
        """
        dataset = self._input_dataset(train, valid, columns)
        self._set_index(dataset)
        for name in ("config_", "selection_", "refit_", "_prediction_cache"):
            vars(self).pop(name, None)  # a refit chooses again
        self._fit_dataset(dataset, on_epoch_end=on_epoch_end, checkpointer=checkpointer, echo=echo)
        return self

    # ----------------------------------------------------------- predict
    def _oriented_outputs(self, rows: np.ndarray) -> torch.Tensor:
        return predict_rows(self.module_, self.rows_, rows, batch_size=self.eval_batch_size)

    def _predict_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        rows, cols = (users, items) if self._orientation == "user" else (items, users)
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
        return out * self._scale + self._baseline(users, items)

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        if self._orientation == "user":
            scores = self._oriented_outputs(users).double().numpy()
        else:
            scores = self._item_oriented_scores(users)
        scores *= self._scale
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
        return self.module_(fold_in_input(self.module_, x))[0].double().numpy()

    def _fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """Encode a new user's ratings and read predictions off the output (user-based)."""
        if self._orientation != "user":
            raise DataError(
                "an item-based model cannot fold in new users (its outputs are users); "
                "fold in new items instead, or train with orientation='user'"
            )
        items = np.asarray(items, dtype=np.int64)
        base = self.user_baseline(items, ratings)
        if base is None:
            base = np.zeros(self.n_items)
        resid = (np.asarray(ratings, np.float64) - base[items]) / self._scale
        return self._fold_in_vector(items, resid) * self._scale + base

    def user_baseline(
        self, items: np.ndarray, ratings: np.ndarray, user: int | None = None
    ) -> np.ndarray | None:
        """center="bias": mu + b_u + b_i over all items (None when uncentred), for a known
        user index (its trained b_u) or a new user (b_u folded in from `ratings`). A caller
        that runs the module itself (the HTTP batcher) feeds (r - baseline[items]) / scale
        and maps outputs back with output * scale + baseline (see `output_scale`)."""
        if self._center != "bias":
            return None
        mu, user_bias, b_i = self.prediction_biases()
        if user is None:
            b_u = fold_in_bias(np.asarray(items, np.int64), ratings, mu, b_i, CENTER_REG_USER)
        else:
            b_u = float(user_bias[user])
        return mu + b_u + b_i

    def _fold_in_item(self, users: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """Encode a new item's ratings by known users (item-based models only)."""
        if self._orientation != "item":
            raise DataError(
                "a user-based model cannot fold in new items (its inputs are items); "
                "fold in new users instead, or train with orientation='item'"
            )
        users = np.asarray(users, dtype=np.int64)
        scale = self._scale
        if self._center != "bias":
            x = np.asarray(ratings, np.float64) / scale
            return self._fold_in_vector(users, x) * scale
        mu, b_u, _ = self.prediction_biases()
        b_i = fold_in_bias(users, ratings, mu, b_u, CENTER_REG_ITEM)
        resid = (np.asarray(ratings, np.float64) - (mu + b_u[users] + b_i)) / scale
        return self._fold_in_vector(users, resid) * scale + mu + b_u + b_i

    @property
    def output_scale(self) -> float:
        """The network's unit on the rating scale (1.0 unless standardize): inputs are
        divided by it and outputs multiplied by it."""
        return self._scale

    # ---------------------------------------------------------- save/load
    def _state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"module.{k}": v for k, v in self.module_.state_dict().items()}
        state["center.scale"] = torch.tensor([self._scale], dtype=torch.float64)
        if self._center == "bias":
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
        if "center.scale" not in state:
            self.standardize = False  # saved before `standardize` existed
        config = self.config()
        self.config_ = config
        n_inputs = self.n_items if config.orientation == "user" else self.n_users
        _check_encoder_shapes(state, n_inputs, config.hidden)  # before allocating (issue 8)
        module = build_model(config, n_inputs, self.n_items if config.global_kernel else 0)
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
        scale = state.get("center.scale")
        self.center_scale_ = 1.0 if scale is None else float(scale.reshape(-1)[0])
        if not (np.isfinite(self.center_scale_) and self.center_scale_ > 0):
            raise CheckpointError(f"invalid center.scale {self.center_scale_!r} in the weights")
        self._drop_prediction_cache()

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

    def _saved_params(self) -> dict[str, Any]:
        """The trained settings (the chosen ones, after a selection), so that loading
        rebuilds exactly this model."""
        params = self.get_params()
        params.update({k: v for k, v in self.config().to_dict().items() if k in params})
        return params

    def _fitted_meta(self) -> dict[str, Any]:
        history = [r.to_dict() for r in getattr(self, "history_", [])]
        selection = getattr(self, "selection_", None)
        return {
            "selection": selection,
            "refit": getattr(self, "refit_", None),
            "teacher": getattr(self, "teacher_", None),
            "best_epoch": getattr(self, "best_epoch_", None),
            "best_valid_rmse": getattr(self, "best_valid_rmse_", None),
            "history": history,
            "architecture": self.module_.architecture(),
        }

    def _load_fitted_meta(self, meta: dict[str, Any]) -> None:
        if meta.get("selection") is not None:
            self.selection_ = meta["selection"]
        if meta.get("refit") is not None:
            self.refit_ = meta["refit"]
        if meta.get("teacher") is not None:
            self.teacher_ = meta["teacher"]
        self.best_epoch_ = meta.get("best_epoch")
        self.best_valid_rmse_ = meta.get("best_valid_rmse")
        self.history_ = [EpochRecord(**r) for r in meta.get("history", [])]

    @classmethod
    def load(cls, path: str | Path) -> DeepRec:  # type: ignore[override]
        return super().load(path)  # type: ignore[return-value]

    @property
    def module(self) -> AutoEncoder:
        return self.module_


def _teacher_member(config: TrainConfig) -> DeepRec:
    """A teacher model (deeprec.teacher): it predicts from training inputs until refitted."""
    return DeepRec.from_config(config, predict_inputs="train", predict_center="train")


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
