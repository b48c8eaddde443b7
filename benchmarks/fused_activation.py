"""A hidden layer's element-wise work: torch's separate ops vs train/fused_activation.py.

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src /work/venv/bin/python \\
        benchmarks/fused_activation.py --out docs/results/fused_activation.json

Tiles of batch 128 x 512 and x 1,024 (the benchmarks' hidden widths), SELU, dropout noise
(keep 0.2) present. Fastest of `reps` calls, in ms. What a fast step runs around each
hidden product:
- bf16 forward: bias add on the bf16 product, SELU, dropout multiply, bf16 cast of the next
  layer's input; fp32 forward: SELU and dropout multiply (oneDNN added the bias);
- bf16 backward: dropout multiply on the bf16 incoming gradient, SELU backward, bias
  gradient (column sums), bf16 cast; fp32 backward: the same without the cast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _speed_common import emit_report, microbenchmark_args, min_seconds
from deeprec.train import fused_activation
from deeprec.train.fast_step import _SELU_ALPHA, _SELU_SCALE

SHAPES = ((128, 512), (128, 1024))
_aten = torch.ops.aten


def best_ms(fn, reps: int) -> float:
    return round(min_seconds(fn, reps) * 1e3, 4)


def measure(rows: int, cols: int, reps: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    product = torch.randn(rows, cols, generator=gen)
    product_low = product.bfloat16()
    bias = torch.randn(cols, generator=gen) * 0.1
    noise = (torch.rand(rows, cols, generator=gen) < 0.2).float().div_(0.2)
    y = F.selu(product)
    grad_low = torch.randn(rows, cols, generator=gen).bfloat16()
    grad = grad_low.float()

    def separate_forward(low: bool):
        def run():
            z = torch.add(bias, product_low) if low else product
            h = F.selu(z) * noise
            return h.bfloat16() if low else h

        return run

    def separate_backward(low: bool):
        def run():
            gz = _aten.elu_backward(
                (grad_low if low else grad) * noise, _SELU_ALPHA, _SELU_SCALE, 1, True, y
            )
            return gz.sum(0), gz.bfloat16() if low else gz

        return run

    out: dict = {
        "bf16 forward, separate ops": best_ms(separate_forward(True), reps),
        "fp32 forward, separate ops": best_ms(separate_forward(False), reps),
        "bf16 backward, separate ops": best_ms(separate_backward(True), reps),
        "fp32 backward, separate ops": best_ms(separate_backward(False), reps),
    }
    if fused_activation.kernels() is not None:
        bf16, fp32 = torch.bfloat16, torch.float32
        out["bf16 forward, fused"] = best_ms(
            lambda: fused_activation.forward("selu", product_low, bias, noise, bf16), reps
        )
        out["fp32 forward, fused"] = best_ms(
            lambda: fused_activation.forward("selu", product, None, noise, fp32), reps
        )
        out["bf16 backward, fused"] = best_ms(
            lambda: fused_activation.backward("selu", grad_low, noise, y, bf16), reps
        )
        out["fp32 backward, fused"] = best_ms(
            lambda: fused_activation.backward("selu", grad, noise, y, fp32), reps
        )
    return out


def main() -> None:
    args = microbenchmark_args(__doc__, reps=200)
    report: dict = {"threads": args.threads, "torch": torch.__version__}
    for rows, cols in SHAPES:
        report[f"{rows}x{cols}"] = measure(rows, cols, args.reps)
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
