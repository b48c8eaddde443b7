"""Export a DeepRec autoencoder for other runtimes (ONNX, TorchScript), checked for parity.

The exported graph maps dense rating vectors (batch, n_inputs) to predicted ratings
(batch, n_inputs), unclipped, dropout off, with a dynamic batch axis. A sidecar JSON
(FILE.json) records the orientation, the rating scale and the raw ids of the inputs, so
another runtime can build input vectors and read outputs without deeprec.

Uncentred models (``center="none"``) have one input, ``ratings``: the ratings at the
positions of ``input_ids``, 0 elsewhere. Centred models (``center="bias"``) have a second
input, ``rated`` (1 where the row has a rating, 0 elsewhere; needed because 0 can be a
rating), and the graph does the centring itself: every input row is folded in as the
estimator folds in a new user (user-based; a new item for item-based models): its bias
b_row = sum(rated * (r - mu - b_col)) / (reg + count), the autoencoder runs on the
residuals r - (mu + b_row + b_col) at the rated positions, and mu + b_row + b_col is
added back, so the output is ratings (what ``DeepRec.predict_for`` gives, unclipped).

ONNX uses the TorchScript-based exporter (``dynamo=False``): the dynamo exporter of
torch 2.13 needs the extra ``onnxscript`` package, which the project does not depend on.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from deeprec.atomic import atomic_file, atomic_path
from deeprec.errors import DataError
from deeprec.recommend.fitted import fitted_setting

if TYPE_CHECKING:  # pragma: no cover
    from deeprec.base import Recommender

FORMATS = ("onnx", "torchscript")
INPUT_NAME, OUTPUT_NAME = "ratings", "predictions"
RATED_NAME = "rated"  # the second input of a centred model's graph


class CenteredGraph(torch.nn.Module):
    """The autoencoder between the fold-in centring and its inverse (see module docstring);
    a standardised model's residuals are divided by its output scale on the way in and
    multiplied on the way out."""

    def __init__(
        self,
        module: torch.nn.Module,
        mean: float,
        col_bias: np.ndarray,
        reg: float,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("col_base", torch.as_tensor(mean + col_bias, dtype=torch.float32))
        self.reg = float(reg)
        self.scale = float(scale)

    def forward(self, ratings: torch.Tensor, rated: torch.Tensor) -> torch.Tensor:
        resid = (ratings - self.col_base) * rated
        row_bias = resid.sum(dim=1, keepdim=True) / (self.reg + rated.sum(dim=1, keepdim=True))
        base = self.col_base + row_bias
        return self.module((ratings - base) * rated / self.scale) * self.scale + base


class ScaledGraph(torch.nn.Module):
    """An uncentred, standardised autoencoder on raw ratings: r / scale in, out * scale."""

    def __init__(self, module: torch.nn.Module, scale: float) -> None:
        super().__init__()
        self.module = module
        self.scale = float(scale)

    def forward(self, ratings: torch.Tensor) -> torch.Tensor:
        return self.module(ratings / self.scale) * self.scale


def _module(model: Recommender) -> torch.nn.Module:
    module = getattr(model, "module_", None)
    if module is None:
        raise DataError(f"{type(model).__name__} has no autoencoder module to export")
    return module.eval()


def parity_inputs(model: Recommender, n: int = 64, seed: int = 0) -> torch.Tensor:
    """Dense input vectors of `n` random training rows (real sparsity, real rating values)."""
    from deeprec.data.batching import row_batch

    rows_matrix = model.rows_  # type: ignore[attr-defined]
    rng = np.random.default_rng(seed)
    rows = rng.choice(rows_matrix.shape[0], size=min(n, rows_matrix.shape[0]), replace=False)
    x, _ = row_batch(rows_matrix, np.sort(rows)).dense()
    return x


def is_centered(model: Recommender) -> bool:
    return fitted_setting(model, "center", "none") == "bias"


def output_scale(model: Recommender) -> float:
    return float(getattr(model, "output_scale", 1.0))


def exported_graph(model: Recommender) -> torch.nn.Module:
    """What export writes: the module itself, or wrapped in its centring (center="bias")."""
    module = _module(model)
    scale = output_scale(model)
    if not is_centered(model):
        return module if scale == 1.0 else ScaledGraph(module, scale).eval()
    from deeprec.estimator import CENTER_REG_ITEM, CENTER_REG_USER

    user_based = fitted_setting(model, "orientation", "user") == "user"
    mean, user_bias, item_bias = model.prediction_biases()  # type: ignore[attr-defined]
    col_bias = item_bias if user_based else user_bias
    reg = CENTER_REG_USER if user_based else CENTER_REG_ITEM
    return CenteredGraph(module, mean, col_bias, reg, scale).eval()


def parity_ratings(
    model: Recommender, n: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw rating rows for a centred graph: (ratings, rated mask, row indices) of `n` random
    training rows in the model's orientation."""
    from deeprec.data.batching import row_batch

    train = model.input_ratings()
    if fitted_setting(model, "orientation", "user") != "user":
        train = train.transpose()
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(train.shape[0], size=min(n, train.shape[0]), replace=False))
    x, mask = row_batch(train, rows).dense()
    return x.numpy(), mask.numpy().astype(np.float32), rows


def expected_centered(model: Recommender, x: np.ndarray, rated: np.ndarray) -> np.ndarray:
    """The estimator's own fold-in predictions (unclipped) for raw rating rows."""
    user_based = fitted_setting(model, "orientation", "user") == "user"
    fold = model._fold_in if user_based else model._fold_in_item
    out = np.empty(x.shape, dtype=np.float64)
    for r in range(x.shape[0]):
        index = np.flatnonzero(rated[r])
        out[r] = fold(index, x[r, index].astype(np.float64))
    return out


def export_model(
    model: Recommender,
    out: str | Path,
    fmt: str = "onnx",
    *,
    n_check: int = 64,
    seed: int = 0,
    opset: int = 17,
) -> dict[str, Any]:
    """Write the model to `out` atomically and return the parity report against PyTorch."""
    if fmt not in FORMATS:
        raise DataError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    module = _module(model)
    graph = exported_graph(model)
    centered = is_centered(model)
    if centered:
        x, rated, _rows = parity_ratings(model, n=max(2, n_check), seed=seed)
        example: tuple[torch.Tensor, ...] = (torch.from_numpy(x), torch.from_numpy(rated))
        expected = expected_centered(model, x, rated)
        names = [INPUT_NAME, RATED_NAME]
    elif graph is not module:  # standardised, uncentred: raw ratings in, ratings out
        x, _rated, rows = parity_ratings(model, n=max(2, n_check), seed=seed)
        example = (torch.from_numpy(x),)
        expected = model._oriented_outputs(rows).double().numpy() * output_scale(model)  # type: ignore[attr-defined]
        names = [INPUT_NAME]
    else:
        example = (parity_inputs(model, n=max(2, n_check), seed=seed),)
        with torch.inference_mode():
            expected = module(example[0]).numpy()
        names = [INPUT_NAME]
    out = Path(out)
    with atomic_path(out) as tmp:
        if fmt == "onnx":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
                torch.onnx.export(
                    graph,
                    example,
                    str(tmp),
                    dynamo=False,
                    input_names=names,
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={name: {0: "batch"} for name in [*names, OUTPUT_NAME]},
                    opset_version=opset,
                )
        else:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(graph, example)
            traced.save(str(tmp))
        got = run_exported(
            tmp, fmt, example[0].numpy(), rated=example[1].numpy() if centered else None
        )
    diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    report = {
        "path": str(out),
        "format": fmt,
        "n_inputs": int(module.n_inputs),
        "orientation": fitted_setting(model, "orientation", "user"),
        "inputs": names,
        "parity_rows": int(example[0].shape[0]),
        "parity_max_abs_diff": diff,
        "parity_ok": diff <= 1e-5,
    }
    ids = model.item_ids_ if report["orientation"] == "user" else model.user_ids_
    sidecar = {
        **report,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "rating_range": list(model.rating_range_),
        "input_ids": ids.tolist(),
        "note": "input vector: ratings at the positions of input_ids, 0 elsewhere",
    }
    if centered:
        sidecar.update(
            center="bias",
            rated=RATED_NAME,
            note="center=bias: inputs 'ratings' (ratings at the positions of input_ids, 0 "
            "elsewhere) and 'rated' (1 where rated, 0 elsewhere); the graph centres each row "
            "(folding in its bias as for a new user) and outputs ratings, unclipped",
        )
    with atomic_file(out.with_name(out.name + ".json"), "w") as handle:
        json.dump(sidecar, handle)
    return report


def run_exported(
    path: str | Path, fmt: str, x: np.ndarray, rated: np.ndarray | None = None
) -> np.ndarray:
    """Run an exported file on dense inputs with its own runtime (onnxruntime or torch.jit);
    `rated` is the second input of a centred model's graph."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    inputs = [x] if rated is None else [x, np.ascontiguousarray(rated, dtype=np.float32)]
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - optional dependency
            raise DataError(
                "ONNX parity needs onnxruntime (pip install 'deeprec[export]')"
            ) from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        if len(names) != len(inputs):
            raise DataError(f"{path} takes inputs {names}; got {len(inputs)} array(s)")
        return session.run([OUTPUT_NAME], dict(zip(names, inputs, strict=True)))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated in favour of torch.export
        loaded = torch.jit.load(str(path))
    with torch.inference_mode():
        return loaded(*(torch.from_numpy(a) for a in inputs)).numpy()
