"""SELU/ELU layers' element-wise work in one pass each way, as hand-written AVX-512 loops.

Around every hidden layer's product a fast step otherwise runs several separate passes over
the (batch x width) activations: forward the bias add (bf16: the product comes without
it), the activation, the dropout multiply and the bf16 cast of the next layer's input;
backward the dropout multiply, the activation's backward, the bias gradient (column sums)
and the bf16 cast for the next two products. Each pass allocates, reads and writes the
whole tile; here each direction is one loop over it (built by kernels/native.py):

    forward:  y = act(p + bias);  h = y * noise  (stored in the next product's dtype)
    backward: gz = (g * noise) * act'(z), act' from y as torch's elu_backward computes it
              (is_result=True);  bias_grad = column sums of gz in fp32;  gz stored in the
              next products' dtype

act is ELU with torch's parameters (SELU: alpha 1.6733, scale 1.0507), computed as torch's
CPU kernel computes it (x > 0 ? x * scale : expm1(x) * alpha * scale, the same vectorised
expm1): forward values equal torch's bit for bit (tested; torch's own scalar tail of a tile
whose size is not a multiple of 16 may differ in the last bit); the bias gradient is summed
over the rows in another order. Each thread owns a range of columns, so the column sums
need no reduction across threads. Measured on the 2-core development machine
(benchmarks/fused_activation.py, docs/results/fused_activation.json), 128 x 512 tiles:
bf16 forward 0.075 -> 0.062 ms, backward 0.044 -> 0.020 ms; fp32 forward 0.055 -> 0.054 ms
(both bound by expm1), backward 0.029 -> 0.016 ms. Anything else (other activations,
float64, a GPU, no AVX-512 or no compiler) keeps FastNet's separate ops.
"""

from __future__ import annotations

import functools

import torch

from deeprec.kernels import native
from deeprec.kernels.native import Kernel
from deeprec.kernels.switch import enabled

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
# (negative-side factor alpha * scale, positive-side factor scale) of the fused activations
COEFFICIENTS = {"selu": (_SELU_ALPHA * _SELU_SCALE, _SELU_SCALE), "elu": (1.0, 1.0)}

_COMMON = r"""
#include <torch/csrc/inductor/cpp_prefix.h>
#include <immintrin.h>

static inline __mmask16 lanes(int64_t left) {
    return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
}
static inline __m512 load(const void* p, int64_t bf16, __mmask16 k) {
    if (bf16) {
        const __m256i bits = _mm256_maskz_loadu_epi16(k, p);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
    }
    return _mm512_maskz_loadu_ps(k, p);
}
static inline void store(void* p, int64_t bf16, __m512 v, __mmask16 k) {
    if (bf16) _mm256_mask_storeu_epi16(p, k, at::vec::cvtfp32_bf16(v));
    else _mm512_mask_storeu_ps(p, k, v);
}
// the [begin, end) column range of thread `t` of `n`, in whole 16-lane blocks
static inline void columns(int64_t cols, int t, int n, int64_t& begin, int64_t& end) {
    const int64_t blocks = (cols + 15) / 16;
    begin = std::min(cols, blocks * t / n * 16);
    end = std::min(cols, blocks * (t + 1) / n * 16);
}
"""

_FORWARD = (
    _COMMON
    + r"""
// y = act(p + bias); h = y * noise (or y), in h's dtype
// bias_ptr, noise_ptr, h_ptr: addresses, 0 for none
extern "C" void kernel(const void* p, int64_t p_bf16, uintptr_t bias_ptr, uintptr_t noise_ptr,
                       float* y, uintptr_t h_ptr, int64_t h_bf16, int64_t rows, int64_t cols,
                       float neg, float pos) {
    const float* bias = reinterpret_cast<const float*>(bias_ptr);
    const float* noise = reinterpret_cast<const float*>(noise_ptr);
    void* h = reinterpret_cast<void*>(h_ptr);
    #pragma omp parallel
    {
        int64_t begin, end;
        columns(cols, omp_get_thread_num(), omp_get_num_threads(), begin, end);
        const __m512 v_neg = _mm512_set1_ps(neg), v_pos = _mm512_set1_ps(pos), zero = _mm512_setzero_ps();
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t base = r * cols;
            for (int64_t c = begin; c < end; c += 16) {
                const __mmask16 k = lanes(end - c);
                const int64_t i = base + c;
                __m512 x = load(static_cast<const char*>(p) + i * (p_bf16 ? 2 : 4), p_bf16, k);
                if (bias) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(k, bias + c));
                const __m512 e = _mm512_mul_ps(at::vec::Vectorized<float>(x).expm1(), v_neg);
                const __mmask16 positive = _mm512_cmp_ps_mask(x, zero, _CMP_GT_OQ);
                const __m512 act = _mm512_mask_blend_ps(positive, e, _mm512_mul_ps(x, v_pos));
                _mm512_mask_storeu_ps(y + i, k, act);
                if (h) {
                    const __m512 out = noise ? _mm512_mul_ps(act, _mm512_maskz_loadu_ps(k, noise + i)) : act;
                    store(static_cast<char*>(h) + i * (h_bf16 ? 2 : 4), h_bf16, out, k);
                }
            }
        }
    }
}
"""
)

_BACKWARD = (
    _COMMON
    + r"""
// gz = (g * noise) * act'(from y); bias_grad = column sums of gz (fp32), gz stored in its dtype
// noise_ptr: an address, 0 for none
extern "C" void kernel(const void* g, int64_t g_bf16, uintptr_t noise_ptr, const float* y,
                       void* gz, int64_t gz_bf16, float* bias_grad, int64_t rows, int64_t cols,
                       float neg, float pos) {
    const float* noise = reinterpret_cast<const float*>(noise_ptr);
    #pragma omp parallel
    {
        int64_t begin, end;
        columns(cols, omp_get_thread_num(), omp_get_num_threads(), begin, end);
        for (int64_t c = begin; c < end; c += 16) _mm512_mask_storeu_ps(bias_grad + c, lanes(end - c), _mm512_setzero_ps());
        const __m512 v_neg = _mm512_set1_ps(neg), v_pos = _mm512_set1_ps(pos), zero = _mm512_setzero_ps();
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t base = r * cols;
            for (int64_t c = begin; c < end; c += 16) {
                const __mmask16 k = lanes(end - c);
                const int64_t i = base + c;
                __m512 grad = load(static_cast<const char*>(g) + i * (g_bf16 ? 2 : 4), g_bf16, k);
                if (noise) grad = _mm512_mul_ps(grad, _mm512_maskz_loadu_ps(k, noise + i));
                const __m512 yv = _mm512_maskz_loadu_ps(k, y + i);
                const __mmask16 positive = _mm512_cmp_ps_mask(yv, zero, _CMP_GT_OQ);
                const __m512 slope = _mm512_mask_blend_ps(positive, _mm512_add_ps(yv, v_neg), v_pos);
                const __m512 out = _mm512_mul_ps(grad, slope);
                store(static_cast<char*>(gz) + i * (gz_bf16 ? 2 : 4), gz_bf16, out, k);
                _mm512_mask_storeu_ps(bias_grad + c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, bias_grad + c), out));
            }
        }
    }
}
"""
)

_FORWARD_ARGS = ["const void*", "int64_t", "uintptr_t", "uintptr_t", "float*", "uintptr_t"]
_FORWARD_ARGS += ["int64_t", "int64_t", "int64_t", "float", "float"]
_BACKWARD_ARGS = ["const void*", "int64_t", "uintptr_t", "const float*", "void*", "int64_t"]
_BACKWARD_ARGS += ["float*", "int64_t", "int64_t", "float", "float"]
_FLOATS = (torch.float32, torch.bfloat16)


def kernels() -> tuple[Kernel, Kernel] | None:
    """(forward, backward) loops, or None where they do not apply, do not build or are
    switched off (kernels.switch)."""
    return _build() if enabled("fused_activation") else None


@functools.cache
def _build() -> tuple[Kernel, Kernel] | None:
    forward_loop = native.load("fused activation forward", _FORWARD_ARGS, _FORWARD)
    backward_loop = native.load("fused activation backward", _BACKWARD_ARGS, _BACKWARD)
    if forward_loop is None or backward_loop is None:
        return None
    return forward_loop, backward_loop


def supports(activation: str, tile: torch.Tensor) -> bool:
    """Whether a layer with this activation and this (batch x width) product (or incoming
    gradient) runs the fused loops."""
    return (
        activation in COEFFICIENTS
        and tile.device.type == "cpu"
        and tile.dtype in _FLOATS
        and tile.dim() == 2
        and tile.is_contiguous()
        and kernels() is not None
    )


def _address(t: torch.Tensor | None) -> int:
    """A contiguous fp32 tensor's data address for the loops (0 for None)."""
    if t is None:
        return 0
    if t.dtype != torch.float32 or not t.is_contiguous() or t.device.type != "cpu":
        raise ValueError("fused activation: bias and noise must be contiguous fp32 CPU tensors")
    return t.data_ptr()


def forward(
    activation: str,
    product: torch.Tensor,
    bias: torch.Tensor | None,
    noise: torch.Tensor | None,
    out_dtype: torch.dtype,
    y: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, h): y = act(product + bias) in fp32, h = y * noise (or y) in out_dtype (h is y
    itself when that is the same tensor). `y` may be passed in preallocated."""
    forward_loop, _ = kernels()
    rows, cols = product.shape
    if y is None:
        y = torch.empty(rows, cols, dtype=torch.float32)
    same = noise is None and out_dtype == torch.float32
    h = y if same else torch.empty(rows, cols, dtype=out_dtype)
    neg, pos = COEFFICIENTS[activation]
    forward_loop(
        product,
        int(product.dtype == torch.bfloat16),
        _address(bias),
        _address(noise),
        y,
        0 if same else h.data_ptr(),
        int(out_dtype == torch.bfloat16),
        rows,
        cols,
        neg,
        pos,
    )
    return y, h


def backward(
    activation: str,
    grad: torch.Tensor,
    noise: torch.Tensor | None,
    y: torch.Tensor,
    out_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(gz in out_dtype, bias gradient in fp32) for the layer's output gradient `grad`."""
    _, backward_loop = kernels()
    rows, cols = grad.shape
    gz = torch.empty(rows, cols, dtype=out_dtype)
    bias_grad = torch.empty(cols, dtype=torch.float32)
    neg, pos = COEFFICIENTS[activation]
    backward_loop(
        grad,
        int(grad.dtype == torch.bfloat16),
        _address(noise),
        y,
        gz,
        int(out_dtype == torch.bfloat16),
        bias_grad,
        rows,
        cols,
        neg,
        pos,
    )
    return gz, bias_grad
