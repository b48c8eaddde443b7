"""Helpers shared by the speed benchmarks: data loading, matmul peak, step breakdown."""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from deeprec.atomic import atomic_file
from deeprec.data.sparse import CSRMatrix

MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul"}
LINEAR_OPS = {"mkldnn::_linear_pointwise"}  # oneDNN x @ W^T (kernels/cpu_gemm.py)
SPARSE_OPS = {
    "aten::embedding_bag",
    "aten::_embedding_bag",
    "aten::_embedding_bag_forward_only",
    "aten::index_add_",
    "aten::index",
    "aten::index_put_",
    "aten::_index_put_impl_",
    "aten::index_select",
}


def load_movielens_dat(path: str | Path, valid_fraction: float = 0.1, seed: int = 0):
    """(train CSR, valid CSR) user x item from `UserID::MovieID::Rating::Timestamp`;
    a seeded random `valid_fraction` of the ratings is held out."""
    if str(path).endswith(".gz"):
        with gzip.open(path) as handle:
            raw = handle.read()
    else:
        raw = Path(path).read_bytes()
    table = np.array(raw.replace(b"::", b" ").split(), dtype=np.int64).reshape(-1, 4)
    _, users = np.unique(table[:, 0], return_inverse=True)
    _, items = np.unique(table[:, 1], return_inverse=True)
    ratings = table[:, 2].astype(np.float32)
    shape = (int(users.max()) + 1, int(items.max()) + 1)
    held = np.random.default_rng(seed).random(table.shape[0]) < valid_fraction
    train = CSRMatrix.from_coo(users[~held], items[~held], ratings[~held], shape)
    valid = CSRMatrix.from_coo(users[held], items[held], ratings[held], shape)
    return train, valid


def min_seconds(fn, reps: int, warmup: int = 2) -> float:
    """The fastest of `reps` timed calls of fn(), after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak(dtype: torch.dtype, shapes: list[tuple[int, int, int]]) -> dict:
    """Best FLOP/s of `a @ b` over the shapes (min of 5 timings each)."""
    best: dict = {"gflops": 0.0, "shape": None, "per_shape": {}}
    for m, k, n in shapes:
        a = torch.randn(m, k).to(dtype)
        b = torch.randn(k, n).to(dtype)
        t = min_seconds(lambda a=a, b=b: a @ b, reps=5)
        gflops = 2 * m * k * n / t / 1e9
        best["per_shape"][f"{m}x{k}x{n}"] = round(gflops, 1)
        if gflops > best["gflops"]:
            best.update(gflops=gflops, shape=(m, k, n))
    return best


def profile_steps(step_fn, batches: list) -> dict:
    """Where a step's time goes: matmuls, sparse gathers/scatters, optimizer, the rest."""
    for batch in batches[:2]:
        step_fn(batch)
    with profile(activities=[ProfilerActivity.CPU], with_flops=True, record_shapes=True) as prof:
        start = time.perf_counter()
        for batch in batches:
            step_fn(batch)
        wall = time.perf_counter() - start
    matmul = sparse = optimizer = refresh = 0.0
    flops = 0.0
    for event in prof.key_averages(group_by_input_shape=True):
        name = event.key
        if name.startswith("Optimizer.step") or name == "deeprec::fused_update":
            optimizer += event.cpu_time_total  # fused_update: bf16 fused SGD, lazy rows
        elif name in MATMUL_OPS:
            matmul += event.self_cpu_time_total
            flops += event.flops or 0
        elif name in LINEAR_OPS:  # the profiler counts no FLOPs for it: from its shapes
            matmul += event.self_cpu_time_total
            (rows, inner), (outputs, _) = event.input_shapes[:2]
            flops += 2 * rows * inner * outputs * event.count
        elif name in SPARSE_OPS:
            sparse += event.self_cpu_time_total
        elif name == "deeprec::bf16_copy_refresh":
            refresh += event.cpu_time_total
    n = len(batches)
    step_ms = wall / n * 1e3
    parts = {
        "matmul_ms": matmul / n / 1e3,
        "sparse_gather_scatter_ms": sparse / n / 1e3,
        "optimizer_ms": optimizer / n / 1e3,
        "bf16_weight_refresh_ms": refresh / n / 1e3,
    }
    parts["elementwise_and_other_ms"] = step_ms - sum(parts.values())
    parts["step_ms_under_profiler"] = step_ms
    parts["matmul_gflops"] = flops / (matmul / 1e6) / 1e9 if matmul else 0.0
    return {k: round(v, 3) for k, v in parts.items()}


def microbenchmark_args(description: str, reps: int) -> argparse.Namespace:
    """The kernel microbenchmarks' options (--threads, applied to torch here; --reps; --out)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=reps)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args


def emit_report(report: dict, out: str | Path | None) -> None:
    """Print the JSON report and, with `out`, write it there (atomically: no half file)."""
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(out, "w") as handle:
            handle.write(text + "\n")
