"""fp32 matrix products over item-wide dimensions, computed in blocks of 1,024 items.

On the development CPU (2 threads, torch 2.13's CPU BLAS) the two fp32 products whose
result is item-wide run far below the machine's fp32 peak when issued as one call:
the output layer's forward h @ W^T (128 x 512 x 17,768: 27-29 ms) and the weight gradients
G^T @ H (17,768 x 128 x 512: 23-26 ms). Split into blocks of 1,024 result rows or columns
they take 17-18 ms; at ML-1M width (3,706 items) 5.7 -> 4.0 and 4.8 -> 3.8 ms
(benchmarks/gemm_blocking.py). bf16 products gain nothing and are left whole. Each block is
an independent slice of the result with the same reduction, so the values are those of one
call up to the BLAS's own blocking.
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
