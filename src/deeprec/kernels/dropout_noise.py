"""Dropout's scaled keep-mask, drawn with the same random numbers as `F.dropout`.

On the CPU, `F.dropout` fills a tensor with `bernoulli_(keep)`: torch's serial kernel draws
one float64 uniform u per element from the default generator and keeps the element when
u < keep. `torch.rand(..., dtype=float64) < keep` draws the same numbers in the same order
and leaves the generator in the same state, so the mask is identical (tests/speed check
it), and it runs ~1.5x as fast: 0.63 vs 0.96 ms for a 128 x 1,024 mask on the development
CPU (docs/results/dropout_noise.json). Both are bound by torch's scalar Mersenne Twister.
Where kernels/mt19937_noise.py's AVX-512 loop builds, the same draws come from a vectorised
copy of that generator, run on its `get_state()` bytes and handed back with `set_state`:
the same mask and generator state bit for bit (tests/speed compare both, from any
generator position), ~10x as fast: 0.068 vs 0.653 ms for a 128 x 1,024 fp32 mask,
0.066 vs 0.686 ms in bf16, 0.036 vs 0.35 ms for 128 x 512 (`benchmarks/dropout_noise.py`,
docs/results/dropout_noise.json; F.dropout's bernoulli_ takes 0.97 ms). Elsewhere
(no AVX-512, no compiler, a NaN mask, a generator state the loop does not model) the
torch.rand path runs. On CUDA the fused `native_dropout` kernel is called, as `F.dropout`
does.

The vectorised draw reads the default generator's state, then writes it back. Unlike
`torch.rand`, which holds the generator's lock while it draws, that is not atomic: a draw
another thread makes from the default generator between the read and the write-back is
undone (its numbers are drawn again by the next call). Two threads drawing from one
generator at once get an order-dependent stream either way.
"""

from __future__ import annotations

import torch

from deeprec.kernels import mt19937_noise


def dropout_noise(like: torch.Tensor, drop: float) -> torch.Tensor:
    """Tensor shaped like `like`: 1/(1-drop) where kept, 0 where dropped (F.dropout's draws)."""
    keep = 1.0 - drop
    if like.is_cuda:  # F.dropout's fused CUDA kernel (its own Philox draws)
        _, mask = torch.native_dropout(like, drop, True)
        return mask.to(like.dtype).mul_(1.0 / keep)  # its scale, rounded as it rounds
    if mt19937_noise.supports(like) and (run := mt19937_noise.kernel()) is not None:
        mask = mt19937_noise.keep_mask(run, like.shape, like.dtype, keep)
        if mask is not None:
            return mask
    uniform = torch.rand(like.shape, dtype=torch.float64, device=like.device)
    return torch.lt(uniform, keep).to(like.dtype).div_(keep)
