"""Export a DeepRec autoencoder for other runtimes (ONNX, TorchScript), checked for parity.

The exported graph is the forward pass on dense rating vectors (batch, n_inputs) ->
(batch, n_inputs), dropout off, with a dynamic batch axis. A sidecar JSON (FILE.json)
records the orientation, the rating scale and the raw ids of the inputs, so another runtime
can build input vectors and read outputs without deeprec.

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

if TYPE_CHECKING:  # pragma: no cover
    from deeprec.base import Recommender

FORMATS = ("onnx", "torchscript")
INPUT_NAME, OUTPUT_NAME = "ratings", "predictions"


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
    example = parity_inputs(model, n=max(2, n_check), seed=seed)
    with torch.inference_mode():
        expected = module(example).numpy()
    out = Path(out)
    with atomic_path(out) as tmp:
        if fmt == "onnx":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
                torch.onnx.export(
                    module,
                    (example,),
                    str(tmp),
                    dynamo=False,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                    opset_version=opset,
                )
        else:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(module, example)
            traced.save(str(tmp))
        got = run_exported(tmp, fmt, example.numpy())
    diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    report = {
        "path": str(out),
        "format": fmt,
        "n_inputs": int(module.n_inputs),
        "orientation": getattr(model, "orientation", "user"),
        "parity_rows": int(example.shape[0]),
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
    scale = float(getattr(model, "output_scale", 1.0))
    if scale != 1.0:  # standardize: the graph works in units of the training spread
        sidecar.update(
            output_scale=scale,
            note="standardize: input = rating / output_scale at the positions of input_ids, "
            "0 elsewhere; prediction = output * output_scale",
        )
    center = model.config().center if hasattr(model, "config_") else "none"
    if center == "bias":  # the graph maps residuals to residuals
        sidecar.update(
            center="bias",
            output_scale=scale,
            center_global_mean=float(model.center_mean_),  # type: ignore[attr-defined]
            center_user_bias=model.center_user_bias_.tolist(),  # type: ignore[attr-defined]
            center_item_bias=model.center_item_bias_.tolist(),  # type: ignore[attr-defined]
            note="center=bias: input = (r - (mu + b_user + b_item)) / output_scale at the "
            "positions of input_ids, 0 elsewhere; prediction = output * output_scale + mu + "
            "b_user + b_item (the user/item "
            "biases index user_ids/item_ids in sorted raw-id order)",
        )
    with atomic_file(out.with_name(out.name + ".json"), "w") as handle:
        json.dump(sidecar, handle)
    return report


def run_exported(path: str | Path, fmt: str, x: np.ndarray) -> np.ndarray:
    """Run an exported file on dense inputs with its own runtime (onnxruntime or torch.jit)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
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
        return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated in favour of torch.export
        loaded = torch.jit.load(str(path))
    with torch.inference_mode():
        return loaded(torch.from_numpy(x)).numpy()
