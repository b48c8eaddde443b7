"""Microbenchmark of the item-wide kernels of a fast step, at ML-1M and Netflix widths.

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src /work/venv/bin/python \
        benchmarks/output_layer_kernels.py --out docs/results/output_layer_kernels.json

Batch 128, width 512, the ratings of a batch drawn like the benchmarks' data (~146 per user
at 3,615 items, ~193 at 17,768). Times are the minimum over repetitions, in ms, with freed
blocks kept in the heap as during training (train/heap.py). Compared:
- the output layer's forward: the dense product h @ W^T (fp32 in one MKL call and through
  oneDNN as train/cpu_gemm.py runs it; bf16) vs the observed-entry loops of
  train/gather_dot.py with fp32 or bf16 weights: the torch.compile one and the hand-written
  AVX-512 one (where it builds) (benchmarks/fp32_gemm.py has every fp32
  product of a step; runs before it existed timed MKL in 1,024-item blocks here);
- a weight gradient G^T @ H (items x 128 x 512), fp32 and bf16;
- the two sparse products of a batch (`embedding_bag`): S @ W and S^T @ H, fp32 vs bf16;
- the re-feed pass's loss gradient from a bf16 output product (train/refeed_loss.py):
  output bias, (out - y) * 2/n, bias gradient and bf16 cast as eager ATen ops vs compiled.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _speed_common import emit_report, microbenchmark_args, min_seconds
from deeprec.data.batching import row_batch
from deeprec.data.sparse import CSRMatrix
from deeprec.model.sparse_ops import sparse_cols_matmul, sparse_rows_matmul
from deeprec.train import cpu_gemm, gather_dot, refeed_loss
from deeprec.train.heap import reuse_freed_memory

BATCH, WIDTH = 128, 512
SHAPES = {"ml-1m": (3615, 146), "netflix": (17768, 193)}  # items, ratings per user


def best_ms(fn, reps: int) -> float:
    return round(min_seconds(fn, reps) * 1e3, 3)


def batch_of(items: int, per_user: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(BATCH), per_user)
    cols = np.concatenate([rng.choice(items, per_user, replace=False) for _ in range(BATCH)])
    values = rng.integers(1, 6, size=rows.shape[0]).astype(np.float32)
    matrix = CSRMatrix.from_coo(rows, cols, values, (BATCH, items))
    return row_batch(matrix, np.arange(BATCH)).prepare()


def measure(items: int, per_user: int, reps: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(items, WIDTH, generator=gen) * 0.02
    w_low = w.bfloat16()
    h = torch.randn(BATCH, WIDTH, generator=gen)
    h_low = h.bfloat16()
    g = torch.randn(BATCH, items, generator=gen)
    g_low = g.bfloat16()
    bias = torch.zeros(items)
    batch = batch_of(items, per_user)
    g_obs = torch.randn(batch.nnz, generator=gen)
    gather_dot.MIN_WEIGHTS = 0  # compile at every size here
    refeed_loss.MIN_COLUMNS = 0
    y = torch.randn(BATCH, items, generator=gen)
    scale = torch.tensor(2.0 / y.numel())

    def observed(weights):
        return lambda: gather_dot.observed_outputs(weights, h, batch.cols, batch.local, bias)

    def observed_compiled(weights):
        def run():
            return gather_dot.KERNEL(weights, h, batch.cols, batch.local, bias, fallback=None)

        return run

    out = {"items": items, "ratings_in_batch": batch.nnz}
    out["output_forward_ms"] = {
        "dense fp32, one call": best_ms(lambda: torch.addmm(bias, h, w.t()), reps),
        "dense fp32, oneDNN": best_ms(lambda: cpu_gemm.linear(h, w, bias), reps),
        "dense bf16": best_ms(lambda: torch.mm(h_low, w_low.t()), reps),
        "observed entries, fp32 weights (compiled)": best_ms(observed_compiled(w), reps),
        "observed entries, bf16 weights (compiled)": best_ms(observed_compiled(w_low), reps),
    }
    if gather_dot.native_kernel() is not None:
        forward = out["output_forward_ms"]
        forward["observed entries, fp32 weights (AVX-512 loop)"] = best_ms(observed(w), reps)
        forward["observed entries, bf16 weights (AVX-512 loop)"] = best_ms(observed(w_low), reps)
    out["weight_gradient_ms"] = {
        "fp32, one call": best_ms(lambda: torch.mm(g.t(), h), reps),
        "bf16": best_ms(lambda: torch.mm(g_low.t(), h_low), reps),
    }
    out["sparse_products_ms"] = {
        "S @ W fp32": best_ms(lambda: sparse_rows_matmul(batch, w, g_obs), reps),
        "S @ W bf16": best_ms(lambda: sparse_rows_matmul(batch, w_low, g_obs), reps),
        "S^T @ H fp32": best_ms(lambda: sparse_cols_matmul(batch, h, g_obs), reps),
        "S^T @ H bf16": best_ms(lambda: sparse_cols_matmul(batch, h_low, g_obs), reps),
    }
    out["refeed_loss_gradient_ms"] = {
        "eager ops": best_ms(
            lambda: refeed_loss._refeed_gradient(g_low, bias, y, scale, False, torch.bfloat16),
            reps,
        ),
        "compiled": best_ms(
            lambda: refeed_loss.refeed_gradient(g_low, bias, y, keep_out=False, low=torch.bfloat16),
            reps,
        ),
    }
    return out


def main() -> None:
    args = microbenchmark_args(__doc__, reps=20)
    report = {"threads": args.threads, "batch": BATCH, "width": WIDTH, "torch": torch.__version__}
    with reuse_freed_memory():
        for name, (items, per_user) in SHAPES.items():
            report[name] = measure(items, per_user, args.reps)
            print(json.dumps({name: report[name]}), file=sys.stderr, flush=True)
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
