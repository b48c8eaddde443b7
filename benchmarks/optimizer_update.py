"""Microbenchmark of the bf16 optimizer update (train/mirrored_sgd.py), at ML-1M and Netflix
sizes of the benchmarks' model (n,512,512,1024,dp0.8,512,512,n, momentum SGD 0.9, weight
decay on the matrices, none on the biases: two param groups, as optim.param_groups makes).

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src /work/venv/bin/python \
        benchmarks/optimizer_update.py --out docs/results/optimizer_update.json

Times are the minimum over repetitions, in ms, of one update of every weight and bias:
- "fp32: torch fused SGD": what fast fp32 runs (no bf16 copies to write);
- "bf16, per matrix (before)": the bf16 update as it was: one compiled call per matrix of
  1M+ weights (SGD + its bf16 copy), torch's fused SGD for the other tensors (their bf16
  gradients upcast first), then the re-cast of their bf16 copies;
- "bf16, one call": every tensor of both groups in one compiled call (what
  mirrored_sgd.sgd_groups runs where the streaming loop does not apply);
- "bf16, streaming loop": train/streaming_sgd.py, one call per tensor, the bf16 copies
  written with streaming stores (what sgd_groups runs on AVX-512 CPUs);
- "..., caches flushed": the same, median of `reps` calls each after writing FLUSH_BYTES
  elsewhere (as in a training step, where the GEMMs and sparse products ran since the last
  update).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _speed_common import emit_report, microbenchmark_args, min_seconds
from deeprec.train import mirrored_sgd, streaming_sgd
from deeprec.train.heap import reuse_freed_memory

HIDDEN = (512, 512, 1024)
ITEMS = {"ml-1m": 3615, "netflix": 17768}
LR, MU, DECAY = 0.001, 0.9, 0.001
FLUSH_BYTES = 200_000_000  # several times the 32 MB last-level cache


def median_after_flush(fn, reps: int) -> float:
    """Median seconds of fn() over reps calls, each after streaming writes through the caches."""
    scratch = torch.empty(FLUSH_BYTES, dtype=torch.uint8)
    fn()
    seconds = []
    for _ in range(reps):
        scratch.add_(1)
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


@contextmanager
def compiled_only():
    """Hide the streaming loop: sgd_groups runs its one compiled call."""
    kernel = streaming_sgd.kernel
    streaming_sgd.kernel = lambda: None
    try:
        yield
    finally:
        streaming_sgd.kernel = kernel


def streaming_timings(update, reps: int) -> dict:
    if streaming_sgd.kernel() is None:
        return {"bf16, streaming loop": None}  # not built here (no AVX-512 or compiler)
    return {
        "bf16, streaming loop": round(min_seconds(update, reps) * 1e3, 3),
        "bf16, streaming loop, caches flushed": round(median_after_flush(update, reps) * 1e3, 3),
    }


def model_shapes(items: int) -> list[tuple[int, int]]:
    """(out, in) of every weight matrix, encoder then decoder."""
    widths = [items, *HIDDEN]
    encoder = [(widths[i + 1], widths[i]) for i in range(len(HIDDEN))]
    return encoder + [(i, o) for o, i in reversed(encoder)]


def measure(items: int, reps: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    shapes = model_shapes(items)
    weights = [torch.randn(s, generator=gen) * 0.02 for s in shapes]
    biases = [torch.zeros(s[0]) for s in shapes]
    grads = [torch.randn(s, generator=gen).bfloat16() for s in shapes]
    bias_grads = [torch.randn(s[0], generator=gen) for s in shapes]
    copies = [w.bfloat16() for w in weights]
    momenta = [torch.zeros_like(t) for t in weights + biases]
    w_mom, b_mom = momenta[: len(weights)], momenta[len(weights) :]

    params = [torch.nn.Parameter(t) for t in weights + biases]
    matrices, vectors = params[: len(weights)], params[len(weights) :]
    groups = [{"params": matrices}, {"params": vectors, "weight_decay": 0.0}]
    fp32_sgd = torch.optim.SGD(groups, lr=LR, momentum=MU, weight_decay=DECAY, fused=True)
    fp32_grads = [g.float() for g in grads] + bias_grads

    def fp32_update() -> None:
        for p, g in zip(params, fp32_grads, strict=True):
            p.grad = g
        fp32_sgd.step()

    large = [i for i, w in enumerate(weights) if w.numel() >= mirrored_sgd.MIN_NUMEL]
    small = [i for i in range(len(weights)) if i not in large]
    small_params = [matrices[i] for i in small] + vectors
    before_sgd = torch.optim.SGD(
        [{"params": [matrices[i] for i in small]}, {"params": vectors, "weight_decay": 0.0}],
        lr=LR,
        momentum=MU,
        weight_decay=DECAY,
        fused=True,
    )

    def before() -> None:
        for i in large:
            mirrored_sgd.sgd_and_copy(weights[i], w_mom[i], grads[i], copies[i], LR, MU, DECAY)
        small_grads = [grads[i].float() for i in small] + bias_grads
        for p, g in zip(small_params, small_grads, strict=True):
            p.grad = g
        before_sgd.step()
        for i in small:
            copies[i].copy_(weights[i])

    def one_call() -> None:
        with compiled_only():
            streamed_or_compiled()

    def streamed_or_compiled() -> None:
        mirrored_sgd.sgd_groups(
            [
                mirrored_sgd.Group(
                    list(zip(weights, w_mom, grads, copies, strict=True)), [], LR, MU, DECAY
                ),
                mirrored_sgd.Group(
                    [], list(zip(biases, b_mom, bias_grads, strict=True)), LR, MU, 0.0
                ),
            ]
        )

    n_weights = sum(w.numel() + b.numel() for w, b in zip(weights, biases, strict=True))
    return {
        "items": items,
        "weights_and_biases": n_weights,
        "tensors": 2 * len(shapes),
        "matrices_of_1M_plus": len(large),
        "update_ms": {
            "fp32: torch fused SGD": round(min_seconds(fp32_update, reps) * 1e3, 3),
            "bf16, per matrix (before)": round(min_seconds(before, reps) * 1e3, 3),
            "bf16, one call": round(min_seconds(one_call, reps) * 1e3, 3),
            "bf16, one call, caches flushed": round(median_after_flush(one_call, reps) * 1e3, 3),
            **streaming_timings(streamed_or_compiled, reps),
        },
    }


def main() -> None:
    args = microbenchmark_args(__doc__, reps=30)
    report = {"threads": args.threads, "torch": torch.__version__}
    with reuse_freed_memory(), torch.no_grad():
        for name, items in ITEMS.items():
            report[name] = measure(items, args.reps)
            print(json.dumps({name: report[name]}), file=sys.stderr, flush=True)
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
