"""The re-feed pass's loss gradient in one pass over the (batch x items) output.

A re-feed step trains on (y, f(y)) with every output observed: the loss is the mean squared
error over the whole dense output. With an identity output activation its gradient and the
output bias's gradient are

    out = product + bias;   g = (out - y) * 2 / numel;   bias_grad = sum over rows of g

and the weight products read g (cast to bf16 in bf16 mode). As separate ATen ops that is
five passes over 128 x 17,768 floats at Netflix scale (add, subtract, scale, column sums,
cast: ~90 MB of memory traffic per re-feed step); compiled by torch.compile it is one loop
reading the product and y and writing g (and `out` only when a further re-feed step needs
it as its input). The values are the eager ops' up to the summation order of the column
sums and float rounding of the fused loop (tested against the eager form).
"""

from __future__ import annotations

import torch

from deeprec.kernels.compiled import CompiledKernel, scalar_tensor

# Outputs narrower than this many columns take the eager ops: compiling costs seconds once
# per process, which a small model never earns back (tests stay fast too).
MIN_COLUMNS = 4096


def _refeed_gradient(
    product: torch.Tensor,
    bias: torch.Tensor | None,
    y: torch.Tensor,
    scale: torch.Tensor,
    keep_out: bool,
    low: torch.dtype | None,
):
    out = product if bias is None else product.to(y.dtype) + bias
    g = (out - y) * scale
    return (out if keep_out else None), g.sum(0), (g if low is None else g.to(low))


KERNEL = CompiledKernel(
    _refeed_gradient, "re-feed loss gradient", dynamic=None, switch="refeed_loss"
)


def refeed_gradient(
    product: torch.Tensor,
    bias: torch.Tensor | None,
    y: torch.Tensor,
    *,
    keep_out: bool,
    low: torch.dtype | None,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """(out or None, bias gradient, output gradient in `low` or y's dtype) for an identity
    output layer whose pre-activation is `product` (+ `bias` when given, else included)."""
    args = (product, bias, y, scalar_tensor(2.0 / y.numel(), y.dtype, y.device), keep_out, low)
    if y.shape[1] < MIN_COLUMNS:
        return _refeed_gradient(*args)
    return KERNEL(*args, fallback=lambda: _refeed_gradient(*args))
