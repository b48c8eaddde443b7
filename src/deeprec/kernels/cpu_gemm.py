"""fp32 layer products on the CPU through oneDNN rather than torch's default BLAS.

torch's CPU `mm`/`addmm` call MKL for fp32. On the development CPU (AMD Zen 4, 2 threads,
fp32 peak ~182 GFLOP/s) oneDNN -- the library torch already uses for bf16 -- runs the
products a training step needs faster (`benchmarks/fp32_gemm.py`, docs/results/fp32_gemm.json,
batch 128, fastest of 20): at Netflix width (17,768 items x 512) the output layer's forward
17.8 ms in one MKL call, 14.8 ms in the 1,024-column slices this project used before, 12.4
ms in oneDNN (~188 GFLOP/s); its input gradient 14.7 -> 12.2 ms; the first layer's dense
forward 14.7 -> 12.1 ms; the middle layers (512-1,024 wide) 8-15% less. oneDNN's matmul is
reached through `mkldnn::_linear_pointwise`, the op Inductor emits for CPU linear layers; it
takes dense tensors of any strides and computes x @ W^T (+ bias) with fp32 accumulation:
the same math as the BLAS call, with its own blocking. Weight gradients (a reduction over
the batch) are slower in oneDNN (14.1 vs 14.8 ms at Netflix width) and stay with torch's `mm`.

Used only for fp32 CPU tensors, and only when a one-off self-check passes; everything
else (float64 in tests, bf16, CUDA, builds without oneDNN) goes to torch's own products.
"""

from __future__ import annotations

import functools

import torch

from deeprec.kernels.switch import enabled


@functools.cache
def onednn_available() -> bool:
    """Whether oneDNN's fp32 linear op exists in this torch build and gives torch's result."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        op = torch.ops.mkldnn._linear_pointwise
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(5, 7, generator=generator)
        w = torch.randn(3, 7, generator=generator)
        b = torch.randn(3, generator=generator)
        with torch.no_grad():
            got = op(x, w, b, "none", [], "")
            transposed = op(x, w.t().contiguous().t(), None, "none", [], "")
        want = torch.addmm(b, x, w.t())
        return bool(
            torch.allclose(got, want, rtol=1e-5, atol=1e-5)
            and torch.allclose(transposed, want - b, rtol=1e-5, atol=1e-5)
        )
    except (AttributeError, RuntimeError):
        return False


def _use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.dim() == 2
        and enabled("onednn_linear")
        and onednn_available()
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
    """x @ weight^T (+ bias); weight is (out, in), contiguous or a transposed view."""
    if _use_onednn(x, weight) and (bias is None or bias.dtype == torch.float32):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    if bias is None:
        return torch.mm(x, weight.t())
    return torch.addmm(bias, x, weight.t())


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b, e.g. an input gradient g @ W (as a linear layer with weight b^T)."""
    return linear(a, b.t())
