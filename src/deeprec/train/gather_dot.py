"""The output layer at the observed entries only: one dot product per rating.

    z[t] = bias[c_t] + W[c_t] . h[r_t]     for every rating t = (batch row r_t, column c_t)

This is all the loss needs when no re-feed step wants the dense output. Eager PyTorch
materialises both (nnz x width) gathers before multiplying (~100 MB per Netflix-scale
batch: ~50 ms). Compiled by torch.compile it is one loop that reads each rated weight row
once while h (batch x width) stays in cache. Measured on the 2-core development machine
against the dense product h @ W^T at batch 128, width 512
(benchmarks/output_layer_kernels.py): 17,768 items 3.3 ms vs 14.8-18.2 ms (fp32), 1.4 vs
6.3 ms (bf16 weights); 3,615 items 0.7 vs 3.0-3.3 ms (fp32), 0.6 vs 1.2 ms (bf16).

The products are accumulated in fp32 (float64 for float64 inputs), also for a bf16 weight
copy, and only the observed values come out: the same values as picking them from the
dense product, up to summation order.
"""

from __future__ import annotations

import torch

from deeprec.train.compiled import CompiledKernel


def _observed_outputs(
    w: torch.Tensor, h: torch.Tensor, cols: torch.Tensor, rows: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    acc = torch.float64 if h.dtype == torch.float64 else torch.float32
    return (w[cols].to(acc) * h[rows].to(acc)).sum(1) + bias[cols]


KERNEL = CompiledKernel(_observed_outputs, "observed-entry output layer")

# Output layers with fewer weights run the eager form: compiling costs ~5-10 s once per
# process (the quickstart went from 10 to 21 s), which a small model never earns back.
MIN_WEIGHTS = 1 << 20


def compiled_for(w: torch.Tensor) -> bool:
    """Whether the output weight `w` gets the compiled loop (else the eager form, which
    materialises (nnz x width) gathers: far slower at scale)."""
    return w.numel() >= MIN_WEIGHTS and not KERNEL.failed


def observed_outputs(
    w: torch.Tensor, h: torch.Tensor, cols: torch.Tensor, rows: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """bias[cols] + rowwise dot(w[cols], h[rows]): (nnz,) in h's precision (fp32 for bf16)."""
    if not compiled_for(w):
        return _observed_outputs(w, h, cols, rows, bias)
    return KERNEL(
        w, h, cols, rows, bias, fallback=lambda: _observed_outputs(w, h, cols, rows, bias)
    )
