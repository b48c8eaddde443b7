"""Training configuration: one flat set of keys shared by YAML files, `--set` and `DeepRec(...)`.

Unknown keys and values of the wrong type are errors (ConfigError), never silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deeprec.errors import ConfigError
from deeprec.model.activations import ACTIVATIONS
from deeprec.model.autoencoder import DROPOUT_PLACEMENTS

OPTIMIZERS = ("sgd", "adam", "adagrad", "rmsprop", "lbfgs")
SCHEDULES = ("none", "multistep")
ORIENTATIONS = ("user", "item")
CENTERS = ("none", "bias")
OUTPUT_STRATEGY_CHOICES = ("auto", "dense", "sparse", "union", "gather")
INPUT_STRATEGY_CHOICES = ("auto", "dense", "sparse")
# options earlier versions wrote into run configs: {key: value that still means the same}
# (lazy_updates: removed, slower on every measured set; reuse_freed_memory: allocator tuning
# left the library, see README "Performance")
RETIRED = {"lazy_updates": False, "reuse_freed_memory": None}


@dataclass
class TrainConfig:
    """Every hyper-parameter of a DeepRec training.

    These defaults are the model a pinned configuration falls back to: the paper's
    user-based orientation (it scales to Netflix-sized item counts and can fold in new
    users), centred on a bias baseline, standardised, with L2 on the weights. They are not
    what `DeepRec()` or `deeprec train` without `--config` train: those choose among
    deeprec.selection's candidates on validation (docs/results/generalization.md).
    """

    # architecture
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    activation: str = "selu"
    last_activation: str = "identity"
    dropout: float = 0.5
    dropout_placement: str = "code"
    constrained: bool = False
    orientation: str = "user"
    # "bias": the autoencoder models residuals r - (mu + b_u + b_i) over a regularised bias
    # baseline fitted on the training split (added back at prediction; docs/results/center.md).
    # The validation RMSE logged during training is then on residuals and unclipped.
    center: str = "bias"
    # true: the autoencoder sees (r - baseline) / s, s the spread of those values on the
    # training split, and predicts back on the rating scale; lr, L2 and initialisation then
    # mean the same on 1-5 stars, 1-100 or -10..10 (the baseline is 0 for center: none)
    standardize: bool = True
    # training procedure
    refeed_steps: int = 0
    input_dropout: float = 0.0
    # c > 0: each input row times c / sqrt(its number of ratings) (model.AutoEncoder); 0 = off
    input_row_scale: float = 0.0
    # true: a second input channel 1(rated) with its own first-layer matrix (model.AutoEncoder;
    # compute: reference only)
    rated_indicator: bool = False
    # d > 0: kernelised weight matrices W * K(u_i, v_j), K = max(0, 1 - ||u - v||^2) over
    # learned d-vectors per unit (kernelNet; model.AutoEncoder; compute: reference only);
    # 0 = off. kernel_sparsity: the penalty kernel_sparsity/2 * sum K^2 added to the loss
    # (same units as weight_decay: the loss is the mean squared error over the batch)
    weight_kernel_dim: int = 0
    kernel_sparsity: float = 0.0
    # k > 0 (odd): GLocal-K's global kernel. After the usual training (the pre-training),
    # up to finetune_epochs full-batch epochs fine-tune the model on ReLU(the training matrix
    # convolved with a k x k kernel computed from the model's per-row mean output;
    # train/global_finetune.py), early-stopped on validation like the pre-training, at
    # learning rate finetune_lr (0 = lr). orientation item, compute reference; 0 = off.
    # finetune_epochs without global_kernel: a plain second phase of up to that many epochs
    # at finetune_lr from the best weights (fresh optimizer state), early-stopped on
    # validation, kept only if it beats the first phase there; any orientation or compute
    global_kernel: int = 0
    finetune_epochs: int = 0
    finetune_lr: float = 0.0
    # true: once validation has chosen the epoch count(s), train the same settings again
    # from the same seed on the training and validation ratings together for that many
    # epochs (the final fit; no effect without a validation split). DeepRec() with no model
    # keyword turns it on for the model it chooses; a pinned config refits only when asked
    refit: bool = False
    # distillation (deeprec.teacher): an ensemble preset's name (e.g. ml-100k-ensemble) or
    # an ensemble YAML's path. Its models train first, on the same split, and their
    # equal-weight mean predicts every (user, item) cell from training inputs; teacher_weight
    # times the mean squared distance of this model's outputs to that mean over the cells
    # without a training rating is added to its loss. With refit, the teacher's models are
    # refitted first. Only this model is kept. "" = off; compute: reference only
    teacher: str = ""
    teacher_weight: float = 10.0
    optimizer: str = "adam"
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.01
    decay_biases: bool = False  # weight_decay on biases too (the reference code's behaviour)
    batch_size: int = 128
    # optimizer lbfgs: L-BFGS iterations (strong-Wolfe line search) per epoch, one full
    # batch (batch_size >= the number of rows); lr is L-BFGS's step scale (1.0 is usual)
    lbfgs_iterations: int = 5
    epochs: int = 50
    lr_schedule: str = "none"
    lr_milestones: list[int] = field(default_factory=lambda: [24, 36, 48, 66, 72])
    lr_gamma: float = 0.5
    # patience in epochs without validation improvement (0 = off); on by default, and it
    # only acts where a validation split exists
    early_stopping: int = 10
    seed: int = 42
    # execution
    compute: str = "fast"
    precision: str = "fp32"
    device: str = "cpu"
    eval_batch_size: int = 1024
    threads: int = 0  # 0 = leave torch's default
    # compute fast: how each batch's output layer and first layer are computed (the
    # strategies round differently, so the choice is part of the run's config). "auto" picks
    # per batch by a fixed cost model of the batch's shape (step/planner.py), never by
    # timings, so two runs with the same seed and threads choose alike. Output: dense,
    # sparse, union or gather (union and gather only without re-feeding); input: dense or
    # sparse.
    output_strategy: str = "auto"
    input_strategy: str = "auto"
    # compute fast on a CUDA device: train with step/graph.py (batches built on the GPU,
    # static shapes, one CUDA graph per size bucket, nothing read back per batch) wherever it
    # applies (SGD; no per-batch callbacks, mid-epoch checkpoints or torchrun); false = the
    # per-batch FastStep. No effect on the CPU.
    cuda_graphs: bool = True
    # checkpoints for --resume (RUN/checkpoints/; see train/checkpoint.py); 0 = off
    checkpoint_every_epochs: int = 1
    checkpoint_every_batches: int = 0  # mid-epoch checkpoints every N batches
    checkpoint_every_minutes: float = 0.0  # also whenever this much time has passed
    checkpoint_keep: int = 2  # newest checkpoint files kept (older ones are deleted)

    def __post_init__(self) -> None:
        self.validate()

    # ---------------------------------------------------------------- checks
    def validate(self) -> None:
        _expect(
            isinstance(self.hidden, (list, tuple)) and len(self.hidden) > 0,
            "hidden",
            "must be a non-empty list of layer sizes, e.g. [512, 512, 1024]",
        )
        self.hidden = [int(_int("hidden", h)) for h in self.hidden]
        _expect(all(h > 0 for h in self.hidden), "hidden", "layer sizes must be positive")
        for key in ("activation", "last_activation"):
            _choice(key, getattr(self, key), tuple(ACTIVATIONS))
        _choice("dropout_placement", self.dropout_placement, DROPOUT_PLACEMENTS)
        _choice("orientation", self.orientation, ORIENTATIONS)
        _choice("center", self.center, CENTERS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("lr_schedule", self.lr_schedule, SCHEDULES)
        _choice("compute", self.compute, ("fast", "reference"))
        _choice("precision", self.precision, ("fp32", "bf16"))
        _choice("device", self.device, ("cpu", "cuda", "auto"))
        for key in ("dropout", "input_dropout"):
            value = _float(key, getattr(self, key))
            _expect(0.0 <= value < 1.0, key, f"must be in [0, 1), got {value}")
            setattr(self, key, value)
        for key in ("lr", "momentum", "weight_decay", "lr_gamma"):
            value = _float(key, getattr(self, key))
            _expect(value >= 0.0, key, f"must be >= 0, got {value}")
            setattr(self, key, value)
        _expect(self.lr > 0, "lr", "must be > 0")
        for key in (
            "refeed_steps",
            "batch_size",
            "epochs",
            "early_stopping",
            "seed",
            "eval_batch_size",
            "threads",
            "checkpoint_every_epochs",
            "checkpoint_every_batches",
            "checkpoint_keep",
            "weight_kernel_dim",
            "lbfgs_iterations",
            "global_kernel",
            "finetune_epochs",
        ):
            setattr(self, key, _int(key, getattr(self, key)))
        _expect(self.weight_kernel_dim >= 0, "weight_kernel_dim", "must be >= 0 (0 = off)")
        _expect(
            self.weight_kernel_dim == 0 or self.compute == "reference",
            "weight_kernel_dim",
            "needs compute: reference (the fast path does not implement it)",
        )
        _expect(
            self.weight_kernel_dim == 0 or not self.constrained,
            "weight_kernel_dim",
            "cannot be combined with constrained (tied) weights",
        )
        self.kernel_sparsity = _float("kernel_sparsity", self.kernel_sparsity)
        _expect(
            math.isfinite(self.kernel_sparsity) and self.kernel_sparsity >= 0.0,
            "kernel_sparsity",
            f"must be >= 0, got {self.kernel_sparsity}",
        )
        _expect(
            self.kernel_sparsity == 0.0 or self.weight_kernel_dim > 0,
            "kernel_sparsity",
            "needs weight_kernel_dim > 0 (it penalises the kernels)",
        )
        self._validate_global_kernel()
        self._validate_teacher()
        _expect(self.lbfgs_iterations >= 1, "lbfgs_iterations", "must be >= 1")
        _expect(
            self.optimizer != "lbfgs"
            or (
                self.compute == "reference"
                and self.precision == "fp32"
                and self.refeed_steps == 0
                and self.dropout == 0.0
                and self.input_dropout == 0.0
                and self.lr_schedule == "none"
            ),
            "optimizer",
            "lbfgs needs compute: reference, precision: fp32, refeed_steps: 0, dropout: 0, "
            "input_dropout: 0 and lr_schedule: none (its line search re-evaluates one "
            "deterministic full-batch loss)",
        )
        _expect(self.batch_size >= 1, "batch_size", "must be >= 1")
        _expect(self.eval_batch_size >= 1, "eval_batch_size", "must be >= 1")
        _expect(self.epochs >= 1, "epochs", "must be >= 1")
        _expect(self.refeed_steps >= 0, "refeed_steps", "must be >= 0")
        self.input_row_scale = _float("input_row_scale", self.input_row_scale)
        _expect(
            math.isfinite(self.input_row_scale) and self.input_row_scale >= 0.0,
            "input_row_scale",
            f"must be >= 0 (0 = off), got {self.input_row_scale}",
        )
        _expect(
            not self.rated_indicator or self.compute == "reference",
            "rated_indicator",
            "needs compute: reference (the fast path does not implement it)",
        )
        _expect(
            self.input_row_scale == 0.0 or self.refeed_steps == 0,
            "input_row_scale",
            "cannot be combined with refeed_steps > 0 (re-fed dense outputs have no row counts)",
        )
        _choice("output_strategy", self.output_strategy, OUTPUT_STRATEGY_CHOICES)
        _choice("input_strategy", self.input_strategy, INPUT_STRATEGY_CHOICES)
        _expect(
            self.refeed_steps == 0 or self.output_strategy in ("auto", "dense", "sparse"),
            "output_strategy",
            "with refeed_steps > 0 must be auto, dense or sparse (re-feeding needs the dense "
            "output f(x))",
        )
        for key in (
            "constrained",
            "decay_biases",
            "standardize",
            "rated_indicator",
            "cuda_graphs",
            "refit",
        ):
            _expect(isinstance(getattr(self, key), bool), key, "must be true or false")
        self.lr_milestones = [_int("lr_milestones", m) for m in self.lr_milestones]
        for key in ("checkpoint_every_epochs", "checkpoint_every_batches"):
            _expect(getattr(self, key) >= 0, key, "must be >= 0 (0 = off)")
        self.checkpoint_every_minutes = _float(
            "checkpoint_every_minutes", self.checkpoint_every_minutes
        )
        _expect(self.checkpoint_every_minutes >= 0, "checkpoint_every_minutes", "must be >= 0")
        _expect(self.checkpoint_keep >= 1, "checkpoint_keep", "must be >= 1")

    def _validate_global_kernel(self) -> None:
        k = self.global_kernel
        _expect(k >= 0 and (k == 0 or k % 2 == 1), "global_kernel", "must be 0 (off) or odd")
        _expect(self.finetune_epochs >= 0, "finetune_epochs", "must be >= 0")
        self.finetune_lr = _float("finetune_lr", self.finetune_lr)
        _expect(
            math.isfinite(self.finetune_lr) and self.finetune_lr >= 0.0,
            "finetune_lr",
            f"must be >= 0 (0 = lr), got {self.finetune_lr}",
        )
        if k == 0:  # finetune_epochs alone: a second, plain phase (DeepRec._second_phase)
            _expect(
                self.finetune_epochs == 0 or self.optimizer != "lbfgs",
                "finetune_epochs",
                "needs a first-order optimizer (the second phase lowers its learning rate)",
            )
            return
        _expect(self.finetune_epochs >= 1, "global_kernel", "needs finetune_epochs >= 1")
        _expect(
            self.orientation == "item"
            and self.compute == "reference"
            and self.precision == "fp32"
            and self.optimizer != "lbfgs"
            and self.refeed_steps == 0,
            "global_kernel",
            "needs orientation: item, compute: reference, precision: fp32, refeed_steps: 0 "
            "and a first-order optimizer (the fine-tuning convolves the whole matrix)",
        )

    def _validate_teacher(self) -> None:
        _expect(isinstance(self.teacher, str), "teacher", "must be a preset name or a path")
        self.teacher = self.teacher.strip()
        self.teacher_weight = _float("teacher_weight", self.teacher_weight)
        _expect(
            math.isfinite(self.teacher_weight) and self.teacher_weight >= 0.0,
            "teacher_weight",
            f"must be >= 0, got {self.teacher_weight}",
        )
        _expect(
            not self.teacher or (self.compute == "reference" and self.optimizer != "lbfgs"),
            "teacher",
            "needs compute: reference and a first-order optimizer (the distillation term is "
            "in the reference step and the fine-tuning phases only)",
        )

    # ------------------------------------------------------------ conversion
    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        values = _drop_retired(values, source)
        unknown = sorted(set(values) - set(cls.option_names()))
        if unknown:
            raise ConfigError(
                f"{source}: unknown option(s) {', '.join(unknown)}; "
                f"known options: {', '.join(cls.option_names())}"
            )
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(read_yaml(path), source=str(path))

    def with_overrides(self, assignments: list[str]) -> TrainConfig:
        """Apply `key=value` strings; values are parsed as YAML (so `hidden=[128,128]` works)."""
        values = self.to_dict()
        for item in assignments:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"--set expects key=value, got {item!r}")
            if key not in values:
                raise ConfigError(
                    f"--set {key}: unknown option; known options: {', '.join(self.option_names())}"
                )
            try:
                values[key] = load_yaml(raw)
            except yaml.YAMLError as exc:
                raise ConfigError(f"--set {key}: cannot parse {raw!r} ({exc})") from None
        return self.from_dict(values, source="--set")

    @classmethod
    def override_values(cls, assignments: list[str]) -> dict[str, Any]:
        """`key=value` strings as {key: parsed value}, checked as with_overrides checks
        them (unknown keys and bad values are ConfigErrors)."""
        cls().with_overrides(assignments)
        return {a.partition("=")[0].strip(): load_yaml(a.partition("=")[2]) for a in assignments}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


class _ConfigLoader(yaml.SafeLoader):
    """yaml.SafeLoader that also reads 1e-3 as a number: YAML 1.1 (PyYAML) wants a dot in
    a float (1.0e-3) and reads 1e-3 as a string, which `lr: 1e-3` or `--set lr=1e-3` meant
    as a number. Quoted values stay strings."""


_ConfigLoader.add_implicit_resolver(  # copies SafeLoader's resolvers; SafeLoader unchanged
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """YAML for configs and --set values: safe, and 1e-3 is a number (see _ConfigLoader)."""
    return yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader subclass: no arbitrary objects


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    return values


def _expect(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key} {message}")


def _drop_retired(values: dict[str, Any], source: str) -> dict[str, Any]:
    """`values` without retired options; a retired option set to what no longer exists is
    a ConfigError (the run would not mean what its config says)."""
    kept = dict(values)
    for key, same in RETIRED.items():
        if key in kept:
            value = kept.pop(key)
            if same is not None and value != same:
                raise ConfigError(f"{source}: option {key} was removed; only {same} is accepted")
    return kept


def _choice(key: str, value: Any, options: tuple[str, ...]) -> None:
    _expect(value in options, key, f"must be one of {', '.join(options)}, got {value!r}")


def _int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    return int(value)


def _float(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    return float(value)
