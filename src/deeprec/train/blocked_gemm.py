"""fp32 matrix products over item-wide dimensions, computed in blocks of 1,024 items.

On the development CPU (2 threads, torch 2.13's CPU BLAS) the output layer's forward
h @ W^T (128 x 512 x 17,768) runs below the machine's fp32 peak as one call: 18.2 ms, 14.8
ms in blocks of 1,024 result columns; at ML-1M width (3,615 items) 3.3 -> 3.0 ms
(benchmarks/output_layer_kernels.py, docs/results/output_layer_kernels.json). For the
weight gradients G^T @ H (items x 128 x 512) blocks of result rows measured 23-26 -> 15-18
ms in an earlier session, but the same within noise in that benchmark (13.7 vs 14.1 ms):
they stay blocked, which costs nothing measurable. bf16 products gain nothing and are left
whole. Each block is an independent slice of the result with the same reduction, so the
values are those of one call up to the BLAS's own blocking.
"""

from __future__ import annotations

import torch

BLOCK = 1024
BLOCKED_DTYPES = (torch.float32,)  # measured to gain; tests add float64 to check the math


def worth_blocking(width: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether a result dimension of `width` is split (fp32 on the CPU, wider than a block).

    GPU BLAS libraries pick their own tiling for these shapes: products there stay whole."""
    return device.type == "cpu" and dtype in BLOCKED_DTYPES and width > BLOCK


def addmm_blocked_columns(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """bias + a @ b, computed in blocks of BLOCK result columns (b's columns)."""
    width = b.shape[1]
    if not worth_blocking(width, a.dtype, a.device):
        return torch.addmm(bias, a, b)
    out = torch.empty(a.shape[0], width, dtype=a.dtype)
    for start in range(0, width, BLOCK):
        stop = start + BLOCK
        torch.addmm(bias[start:stop], a, b[:, start:stop], out=out[:, start:stop])
    return out


def mm_blocked_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b, computed in blocks of BLOCK result rows (a's rows)."""
    height = a.shape[0]
    if not worth_blocking(height, a.dtype, a.device):
        return torch.mm(a, b)
    out = torch.empty(height, b.shape[1], dtype=a.dtype)
    for start in range(0, height, BLOCK):
        stop = start + BLOCK
        torch.mm(a[start:stop], b, out=out[start:stop])
    return out
