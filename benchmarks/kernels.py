"""The fast step's kernels, each against its plain PyTorch fallback, and what each one saves
of a whole training step. One script for every kernel micro-benchmark.

    PYTHONPATH=src python benchmarks/kernels.py --threads 2 --out docs/results/kernels.json
    PYTHONPATH=src python benchmarks/kernels.py --only step,dropout   # some sections only

Sections (`--only`):
- gemm: fp32 layer products, oneDNN (`onednn_linear`) vs torch's mm/addmm (MKL);
- dropout: a dropout mask, `torch.rand` < keep (what the step draws) vs `bernoulli_`;
- update: the bf16 SGD update that also writes the weights' bf16 copies (one compiled
  call, eager) and fp32 torch fused SGD;
- output: the observed-entry output layer (`gather_dot`: AVX-512 loop, torch.compile,
  eager gathers) vs the dense output product;
- step: fast training steps on the ML-1M subset (n,512,512,1024,dp0.8,512,512,n, SELU,
  batch 128) with every kernel, with each kernel switched off (kernels.switch), and with
  all of them off: the share of a step each kernel saves.
Times are the fastest of `--reps` calls (step: the median over a fixed set of batches,
repeated round-robin). The report starts with the machine it ran on (machine_facts).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts
from _speed_common import emit_report, load_movielens_dat, min_seconds
from deeprec.data.batching import epoch_order, iter_row_batches
from deeprec.kernels import KERNELS, cpu_gemm, disabled, gather_dot, mirrored_sgd, status
from deeprec.kernels.dropout_noise import dropout_noise
from deeprec.model.autoencoder import AutoEncoder
from deeprec.step.fast import FastStep

ML1M = "/work/shared/data/ml-1m-users1-2999/ratings.dat.gz"
SECTIONS = ("gemm", "dropout", "update", "output", "step")
HIDDEN = [512, 512, 1024]
BATCH = 128


def ms(fn, reps: int) -> float:
    return round(min_seconds(fn, reps) * 1e3, 4)


def gemm(items: int, reps: int) -> dict:
    """Forward x @ W^T (+ bias) and input gradient g @ W of every layer shape."""
    shapes = {f"output {items} x 512": (items, 512), "middle 1024 x 512": (1024, 512)}
    shapes["middle 512 x 512"] = (512, 512)
    out: dict = {name: _gemm_shape(rows, cols, reps) for name, (rows, cols) in shapes.items()}
    out["onednn_available"] = cpu_gemm.onednn_available()
    return out


def _gemm_shape(rows: int, cols: int, reps: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(rows, cols, generator=gen)
    b = torch.randn(rows, generator=gen)
    x = torch.randn(BATCH, cols, generator=gen)
    g = torch.randn(BATCH, rows, generator=gen)
    row = {
        "forward onednn": ms(lambda: cpu_gemm.linear(x, w, b), reps),
        "input gradient onednn": ms(lambda: cpu_gemm.matmul(g, w), reps),
    }
    with disabled("onednn_linear"):
        row["forward torch"] = ms(lambda: cpu_gemm.linear(x, w, b), reps)
        row["input gradient torch"] = ms(lambda: cpu_gemm.matmul(g, w), reps)
    return row


def dropout(reps: int) -> dict:
    """A 128 x 1,024 and 128 x 512 dropout mask (keep 0.2) two ways; same draws checked."""
    return {f"{BATCH}x{cols}": _dropout_shape((BATCH, cols), reps) for cols in (1024, 512)}


def _dropout_shape(shape: tuple[int, int], reps: int) -> dict:
    like = torch.empty(shape)
    torch.manual_seed(0)
    plain = dropout_noise(like, 0.8)
    torch.manual_seed(0)
    reference = F.dropout(torch.ones(shape), 0.8)
    row = {"same_mask": bool(torch.equal(plain, reference))}
    row["torch.rand < keep"] = ms(lambda: dropout_noise(like, 0.8), reps)
    row["F.dropout (bernoulli_)"] = ms(lambda: F.dropout(torch.ones(shape), 0.8), reps)
    return row


def update(items: int, reps: int) -> dict:
    """One momentum-SGD update of every weight and bias of the benchmark model."""
    gen = torch.Generator().manual_seed(0)
    widths = [items, *HIDDEN]
    enc = [(widths[i + 1], widths[i]) for i in range(len(HIDDEN))]
    shapes = enc + [(i, o) for o, i in reversed(enc)]
    weights = [torch.randn(s, generator=gen) * 0.02 for s in shapes]
    grads = [torch.randn(s, generator=gen).bfloat16() for s in shapes]
    copies = [w.bfloat16() for w in weights]
    moms = [torch.zeros_like(w) for w in weights]
    biases = [torch.zeros(s[0]) for s in shapes]
    bias_grads = [torch.randn(s[0], generator=gen) for s in shapes]
    bias_moms = [torch.zeros_like(b) for b in biases]

    def bf16() -> None:
        mirrored_sgd.sgd_groups(
            [
                mirrored_sgd.Group(
                    list(zip(weights, moms, grads, copies, strict=True)), [], 1e-3, 0.9, 1e-3
                ),
                mirrored_sgd.Group([], list(zip(biases, bias_moms, bias_grads, strict=True)),
                                   1e-3, 0.9, 0.0),
            ]
        )  # fmt: skip

    params = [torch.nn.Parameter(w.clone()) for w in weights + biases]
    fp32_grads = [g.float() for g in grads] + bias_grads
    sgd = torch.optim.SGD(params, lr=1e-3, momentum=0.9, fused=True)

    def fp32() -> None:
        for p, g in zip(params, fp32_grads, strict=True):
            p.grad = g
        sgd.step()

    out = {"weights": sum(w.numel() for w in weights)}
    out["bf16 one compiled call"] = ms(bf16, reps)
    with disabled("mirrored_sgd"):
        out["bf16 eager"] = ms(bf16, reps)
    out["fp32 torch fused SGD"] = ms(fp32, reps)
    return out


def output(batches: list, items: int, reps: int) -> dict:
    """z = bias[c] + W[c] . h[r] at every rating of a batch vs the dense output product."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(items, 512, generator=gen) * 0.02
    gather_dot.MIN_WEIGHTS = min(gather_dot.MIN_WEIGHTS, w.numel())  # compile at this size too
    bias = torch.randn(items, generator=gen)
    h = torch.randn(BATCH, 512, generator=gen)
    batch = batches[0]
    cols, rows = batch.cols, batch.local
    out = {"ratings": int(batch.nnz)}
    out["dense fp32 product"] = ms(lambda: cpu_gemm.linear(h, w, bias), reps)
    out["dense bf16 product"] = ms(lambda: torch.mm(h.bfloat16(), w.bfloat16().t()), reps)
    for label, weight in (("fp32 W", w), ("bf16 W", w.bfloat16())):
        out[f"native loop, {label}"] = (
            ms(lambda weight=weight: gather_dot.observed_outputs(weight, h, cols, rows, bias), reps)
            if gather_dot.native_kernel() is not None
            else None
        )
        native = gather_dot.native_kernel
        gather_dot.native_kernel = lambda: None  # the public-API path: torch.compile
        try:
            out[f"torch.compile, {label}"] = ms(
                lambda weight=weight: gather_dot.observed_outputs(weight, h, cols, rows, bias),
                reps,
            )
        finally:
            gather_dot.native_kernel = native
        with disabled("gather_dot"):
            out[f"eager gathers, {label}"] = ms(
                lambda weight=weight: gather_dot.observed_outputs(weight, h, cols, rows, bias),
                reps,
            )
    return out


def step(batches: list, items: int, rounds: int) -> dict:
    """ms per fast step for each setting with every kernel, each one off, all off."""
    variants: dict[str, tuple[str, ...] | None] = {"all kernels": None}
    variants.update({f"without {name}": (name,) for name in KERNELS})
    variants["no kernels"] = ()
    settings = [("fp32", 0), ("bf16", 0), ("fp32", 1), ("bf16", 1)]
    out: dict = {}
    for precision, refeed in settings:
        torch.manual_seed(0)
        base = AutoEncoder(items, HIDDEN, activation="selu", dropout=0.8)
        states = {}
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for turn in range(rounds):
            names = list(variants) if turn % 2 == 0 else list(reversed(variants))
            for name in names:
                off = variants[name]
                context = nullcontext() if off is None else disabled(*off)
                with context:
                    if name not in states:
                        model = AutoEncoder(items, HIDDEN, activation="selu", dropout=0.8)
                        model.load_state_dict(base.state_dict())
                        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
                        states[name] = FastStep(
                            model, optimizer, precision=precision, refeed_steps=refeed
                        )
                        for batch in batches[:2]:  # builds, compiles, first-touch pages
                            states[name](batch)
                    run = states[name]
                    start = time.perf_counter()
                    for batch in batches:
                        run(batch)
                    seconds[name].append((time.perf_counter() - start) / len(batches))
        median = {name: statistics.median(s) * 1e3 for name, s in seconds.items()}
        full = median["all kernels"]
        out[f"{precision} refeed{refeed}"] = {
            "ms_per_step": {k: round(v, 3) for k, v in median.items()},
            # how much longer a step takes without the kernel: its share of a step
            "saved_share_of_step": {
                k: round(v / full - 1, 4) for k, v in median.items() if k != "all kernels"
            },
            "strategies": dict(states["all kernels"].planner.counts),
        }
        print(f"step {precision} refeed{refeed}: {out[f'{precision} refeed{refeed}']}",
              file=sys.stderr, flush=True)  # fmt: skip
    return out


def ml1m_batches(path: str, count: int) -> tuple[list, int]:
    """`count` training batches of 128 users from the ML-1M subset (10% of ratings held out,
    seed 0), in a seeded epoch order."""
    train, _ = load_movielens_dat(path)
    order = epoch_order(np.arange(train.shape[0]), 1, 1)[: count * BATCH]
    return list(iter_row_batches(train, order, BATCH, prepare=True)), int(train.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--data", default=ML1M, help="MovieLens ratings.dat(.gz)")
    parser.add_argument("--step-batches", type=int, default=12)
    parser.add_argument("--step-rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")
    torch.set_num_threads(args.threads)
    batches, items = ml1m_batches(args.data, args.step_batches)
    report: dict = {"machine": machine_facts(), "kernels_active": status()}
    report["data"] = {"path": args.data, "items": items, "batch": BATCH,
                      "split": "seeded random 10% of ratings held out (seed 0)"}  # fmt: skip
    sections = {
        "gemm": lambda: gemm(items, args.reps),
        "dropout": lambda: dropout(args.reps * 2),
        "update": lambda: update(items, args.reps),
        "output": lambda: output(batches, items, args.reps),
        "step": lambda: step(batches, items, args.step_rounds),
    }
    for name in wanted:
        print(f"section {name}", file=sys.stderr, flush=True)
        report[name] = sections[name]()
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
