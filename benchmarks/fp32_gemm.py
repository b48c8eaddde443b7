"""fp32 layer products on the CPU: torch's default BLAS (MKL) vs oneDNN (train/cpu_gemm.py).

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src /work/venv/bin/python \
        benchmarks/fp32_gemm.py --out docs/results/fp32_gemm.json

For batch 128 and every (out, in) layer shape of the benchmarks' model
(n,512,512,1024,dp0.8,512,512,n) at ML-1M (3,615 items) and Netflix (17,768 items) width,
the fastest of `reps` calls, in ms and GFLOP/s, of the three products a training step runs:
- forward x @ W^T + b: MKL `addmm`; MKL in slices of 1,024 output columns (what the fast
  step ran before oneDNN); oneDNN (`cpu_gemm.linear`);
- input gradient g @ W: MKL `mm`; oneDNN (`cpu_gemm.matmul`);
- weight gradient g^T @ x (x^T @ g for the first layer, in its storage layout): MKL `mm`
  (what the step runs); oneDNN for the record.
The item-wide layers are timed in both orientations the step uses: the output layer's
(items, 512) matrix and the first layer's input-major (items, 512) storage read as its
transposed (512, items) view. Freed memory stays in the heap (train/heap.py), as in training.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _speed_common import emit_report, matmul_peak, microbenchmark_args, min_seconds
from deeprec.train import cpu_gemm
from deeprec.train.heap import reuse_freed_memory

BATCH = 128
HIDDEN = (512, 512, 1024)
ITEMS = {"ml-1m": 3615, "netflix": 17768}
SLICE = 1024


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def _mkl_in_slices(bias: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x @ weight^T + bias in slices of SLICE output columns (the step's former fp32 forward)."""
    out = torch.empty(x.shape[0], weight.shape[0])
    for start in range(0, weight.shape[0], SLICE):
        part = slice(start, start + SLICE)
        torch.addmm(bias[part], x, weight[part].t(), out=out[:, part])
    return out


def measure_layer(out_features: int, in_features: int, weight_view: str, reps: int) -> dict:
    """Every product of one layer; weight_view 'rows' = contiguous (out, in), 'transposed' =
    a view of contiguous (in, out) storage (the first layer's input-major layout)."""
    gen = torch.Generator().manual_seed(0)
    if weight_view == "rows":
        weight = torch.randn(out_features, in_features, generator=gen)
    else:
        weight = torch.randn(in_features, out_features, generator=gen).t()
    bias = torch.randn(out_features, generator=gen)
    x = torch.randn(BATCH, in_features, generator=gen)
    g = torch.randn(BATCH, out_features, generator=gen)
    x_t = x.t().contiguous()
    gflop = 2 * BATCH * in_features * out_features / 1e9
    timings = {
        "forward: MKL addmm": lambda: torch.addmm(bias, x, weight.t()),
        "forward: MKL in 1,024-column slices": lambda: _mkl_in_slices(bias, x, weight),
        "forward: oneDNN": lambda: cpu_gemm.linear(x, weight, bias),
        "input grad: MKL mm": lambda: torch.mm(g, weight),
        "input grad: oneDNN": lambda: cpu_gemm.matmul(g, weight),
    }
    if weight_view == "rows":  # (out, in) gradient g^T @ x
        timings["weight grad: MKL mm"] = lambda: torch.mm(g.t(), x)
        timings["weight grad: oneDNN"] = lambda: _onednn(g.t(), x_t)
    else:  # in the (in, out) storage layout: x^T @ g
        g_t = g.t().contiguous()
        timings["weight grad: MKL mm"] = lambda: torch.mm(x.t(), g)
        timings["weight grad: oneDNN"] = lambda: _onednn(x.t(), g_t)
    if out_features <= SLICE:
        del timings["forward: MKL in 1,024-column slices"]
    result = {}
    for name, fn in timings.items():
        ms = min_seconds(fn, reps) * 1e3
        result[name] = {"ms": round(ms, 3), "gflops": round(gflop / ms * 1e3, 1)}
    return result


def layer_shapes(items: int) -> list[tuple[int, int, str]]:
    """(out, in, weight view) of every layer: first (input-major), middle, output."""
    widths = [items, *HIDDEN]
    encoder = [(widths[i + 1], widths[i]) for i in range(len(HIDDEN))]
    layers = encoder + [(i, o) for o, i in reversed(encoder)]
    return [(o, i, "transposed" if n == 0 else "rows") for n, (o, i) in enumerate(layers)]


def main() -> None:
    args = microbenchmark_args(__doc__, reps=20)
    report: dict = {
        "threads": args.threads,
        "torch": torch.__version__,
        "onednn_linear_available": cpu_gemm.onednn_available(),
        "batch": BATCH,
    }
    if not report["onednn_linear_available"]:
        sys.exit("this torch build has no working oneDNN linear op: nothing to compare")
    with reuse_freed_memory(), torch.no_grad():
        report["fp32_matmul_peak"] = matmul_peak(
            torch.float32, [(2048, 2048, 2048), (4096, 4096, 1024)]
        )
        for name, items in ITEMS.items():
            layers = {}
            for out_features, in_features, view in layer_shapes(items):
                key = f"{out_features}x{in_features} ({view})"
                if key not in layers:
                    layers[key] = measure_layer(out_features, in_features, view, args.reps)
                    print(json.dumps({name: {key: layers[key]}}), file=sys.stderr, flush=True)
            report[name] = layers
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
