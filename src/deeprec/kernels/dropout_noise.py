"""Dropout's scaled keep-mask, drawn with the same random numbers as `F.dropout`.

On the CPU, `F.dropout` fills a tensor with `bernoulli_(keep)`: torch's serial kernel draws
one float64 uniform u per element from the default generator and keeps the element when
u < keep. `torch.rand(..., dtype=float64) < keep` draws the same numbers in the same order
and leaves the generator in the same state, so the mask is identical (tests/speed check
it), and it runs ~1.5x as fast: 0.63 vs 0.96 ms for a 128 x 1,024 mask on the development
CPU (docs/results/kernels.md). Both are bound by torch's scalar Mersenne Twister.
A hand-written AVX-512 copy of the generator (same draws, ~10x as fast) saved 0.6 ms of
a 10-15 ms step (4-6%) and depended on the layout of torch's private generator state; it
was removed (issue 19, docs/results/kernels.md). On CUDA the fused `native_dropout` kernel
is called, as `F.dropout` does.
"""

from __future__ import annotations

import torch


def dropout_noise(like: torch.Tensor, drop: float) -> torch.Tensor:
    """Tensor shaped like `like`: 1/(1-drop) where kept, 0 where dropped (F.dropout's draws)."""
    keep = 1.0 - drop
    if like.is_cuda:  # F.dropout's fused CUDA kernel (its own Philox draws)
        _, mask = torch.native_dropout(like, drop, True)
        return mask.to(like.dtype).mul_(1.0 / keep)  # its scale, rounded as it rounds
    uniform = torch.rand(like.shape, dtype=torch.float64, device=like.device)
    return torch.lt(uniform, keep).to(like.dtype).div_(keep)
