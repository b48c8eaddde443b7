"""Which strategy computes a batch's output layer and first layer in the fast step.

The strategies (step/fast.py) give the same loss and gradients up to float rounding, but
round differently, so the choice decides a run's exact numbers: it comes from the config
(`output_strategy`, `input_strategy`) or, for "auto", from a fixed cost model of the
batch's shape. Nothing here reads a clock, so reruns and resumes choose alike.
"""

from __future__ import annotations

from typing import Any, Protocol

from deeprec.data.batching import RowBatch
from deeprec.errors import ConfigError
from deeprec.kernels import gather_dot


class PlannedNet(Protocol):
    """What the planner reads of the fast step's network (step.fast.FastNet): layer
    shapes only, so the planner need not import the step that uses it."""

    layers: list[Any]

    def out_width(self) -> int: ...


OUTPUT_STRATEGIES = ("dense", "sparse", "union", "gather")
INPUT_STRATEGIES = ("dense", "sparse")
DENSE_FORWARD = ("dense", "sparse")  # strategies that produce the full f(x) for re-feeding


def _work(strategy: str, batch: RowBatch, k: int, union: int | None = None) -> float:
    """Cost units of one output-layer (or first-layer) forward+backward: GEMM multiply-adds,
    plus the memory-bound gathers and scatters of the sparse products weighted x8 per
    multiply-add (a gathered row costs a cache miss; a GEMM streams). Only comparisons
    between strategies for the same batch use it."""
    b, n, nnz = batch.size, batch.n_cols, batch.nnz
    if strategy == "dense":
        return 3.0 * b * n * k
    if strategy == "sparse":
        return b * n * k + 16.0 * nnz * k
    if strategy == "union":
        u = union if union is not None else int(batch.column_union()[0].shape[0])
        return 3.0 * b * u * k + 8.0 * (u + n) * k
    if strategy == "gather":
        return 24.0 * nnz * k
    if strategy == "input-dense":
        return 2.0 * b * n * k
    if strategy == "input-sparse":
        return 16.0 * nnz * k + n * k
    raise ValueError(strategy)


class Planner:
    """Chooses each batch's input and output strategies: the config's choice, or for "auto"
    the argmin over eligible strategies of the cost model `_work` (a pure function of the
    batch's shape and the model's widths, so a seeded run chooses alike on every rerun and
    every resume, whatever the machine's load).

    Measured on the benchmarks' model (ML-1M subset and Netflix scale, 2-core AMD EPYC Zen 4,
    docs/results/train_speed.md and netflix_scale_epoch.md), the rule picks what the earlier
    timing-based planner picked there: `gather` without re-feeding, `sparse` with it, the
    sparse first layer throughout.
    """

    def __init__(
        self, net: PlannedNet, *, refeed: bool, output: str = "auto", inputs: str = "auto"
    ) -> None:
        self.net = net
        self.output = output
        self.inputs = inputs
        eligible = DENSE_FORWARD if refeed else OUTPUT_STRATEGIES
        if output != "auto" and output not in eligible:
            raise ConfigError(
                f"output strategy {output!r} not possible here; choose auto or one of {eligible}"
            )
        if inputs != "auto" and inputs not in INPUT_STRATEGIES:
            raise ConfigError(
                f"input strategy {inputs!r}; choose auto or one of {INPUT_STRATEGIES}"
            )
        self.eligible = eligible
        self.counts: dict[str, int] = {}

    def choose(self, batch: RowBatch) -> tuple[str, str]:
        """(input strategy, output strategy) for this batch."""
        out, inp = self.output, self.inputs
        if out == "auto":
            k_out = self.net.out_width()
            candidates = self.eligible
            out_weight = self.net.layers[-1].param
            if batch.nnz >= batch.n_cols and not gather_dot.compiled_for(out_weight):
                # Eager, `gather` materialises two (nnz x width) gathers: with more ratings
                # than items that is more memory traffic than `sparse` reads (seen at Netflix
                # scale in fp32: ~100 ms per step vs 65 for `sparse`), so it is not offered.
                candidates = tuple(s for s in candidates if s != "gather")
            out = min(candidates, key=lambda s: _work(s, batch, k_out))
        if inp == "auto":
            k_in = int(self.net.layers[0].param.shape[0])
            inp = min(INPUT_STRATEGIES, key=lambda s: _work(f"input-{s}", batch, k_in))
        self.counts[out] = self.counts.get(out, 0) + 1
        return inp, out
