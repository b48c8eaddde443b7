"""The output layer at the observed entries only: one dot product per rating.

    z[t] = bias[c_t] + W[c_t] . h[r_t]     for every rating t = (batch row r_t, column c_t)

This is all the loss needs when no re-feed step wants the dense output. Eager PyTorch
materialises both (nnz x width) gathers before multiplying (~100 MB per Netflix-scale
batch: ~50 ms). Two loops avoid that, each reading every rated weight row once while h
(batch x width) stays in cache:
- on AVX-512 CPUs, a hand-written loop (`_SOURCE`, built by kernels/native.py): fp32 FMAs over
  the width in four accumulators, bf16 weights widened in registers, the weight row of the
  rating four ahead prefetched (the rows are scattered, so the hardware cannot guess them);
- elsewhere, the same sum compiled by torch.compile.
Measured on the 2-core development machine against the dense product h @ W^T at batch 128,
width 512 (benchmarks/output_layer_kernels.py, docs/results/output_layer_kernels.json):
17,768 items 0.80 ms (AVX-512 loop) / 3.26 ms (compiled) vs 12.1 ms dense in fp32, 0.36 /
1.65 vs 6.2 ms with bf16 weights; 3,615 items 0.48 / 0.66 vs 2.65 ms (fp32), 0.26 / 0.71 vs
1.26 ms (bf16).

The products are accumulated in fp32 (float64 for float64 inputs), also for a bf16 weight
copy, and only the observed values come out: the same values as picking them from the
dense product, up to summation order.
"""

from __future__ import annotations

import functools

import torch

from deeprec.kernels.compiled import CompiledKernel
from deeprec.kernels.native import Kernel, load
from deeprec.kernels.switch import enabled


def _observed_outputs(
    w: torch.Tensor, h: torch.Tensor, cols: torch.Tensor, rows: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    acc = torch.float64 if h.dtype == torch.float64 else torch.float32
    return (w[cols].to(acc) * h[rows].to(acc)).sum(1) + bias[cols]


KERNEL = CompiledKernel(_observed_outputs, "observed-entry output layer", switch="gather_dot")

# Output layers with fewer weights run the eager form: compiling costs ~5-10 s once per
# process (the quickstart went from 10 to 21 s), which a small model never earns back.
MIN_WEIGHTS = 1 << 20

_SOURCE = r"""
#include <torch/csrc/inductor/cpp_prefix.h>
#include <immintrin.h>

static inline __m512 load16(const float* p, __mmask16 k) { return _mm512_maskz_loadu_ps(k, p); }
static inline __m512 load16(const at::BFloat16* p, __mmask16 k) {  // bf16 -> fp32: shift
    const __m256i bits = _mm256_maskz_loadu_epi16(k, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}

template <typename W>
static void observed(const W* w, const float* h, const int64_t* cols, const int64_t* rows,
                     const float* bias, float* out, int64_t nnz, int64_t width) {
    const int64_t blocks = width / 64 * 64;
    const int64_t row_bytes = width * static_cast<int64_t>(sizeof(W));
    #pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < nnz; ++t) {
        if (t + 4 < nnz) {  // the weight row four ratings ahead
            const char* ahead = reinterpret_cast<const char*>(w + cols[t + 4] * width);
            for (int64_t b = 0; b < row_bytes; b += 64) _mm_prefetch(ahead + b, _MM_HINT_T0);
        }
        const W* wr = w + cols[t] * width;
        const float* hr = h + rows[t] * width;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int64_t j = 0;
        for (; j < blocks; j += 64) {
            a0 = _mm512_fmadd_ps(load16(wr + j, 0xFFFF), _mm512_loadu_ps(hr + j), a0);
            a1 = _mm512_fmadd_ps(load16(wr + j + 16, 0xFFFF), _mm512_loadu_ps(hr + j + 16), a1);
            a2 = _mm512_fmadd_ps(load16(wr + j + 32, 0xFFFF), _mm512_loadu_ps(hr + j + 32), a2);
            a3 = _mm512_fmadd_ps(load16(wr + j + 48, 0xFFFF), _mm512_loadu_ps(hr + j + 48), a3);
        }
        for (; j < width; j += 16) {
            const int64_t left = width - j;
            const __mmask16 k = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
            a0 = _mm512_fmadd_ps(load16(wr + j, k), load16(hr + j, k), a0);
        }
        const __m512 sum = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
        out[t] = _mm512_reduce_add_ps(sum) + bias[cols[t]];
    }
}

extern "C" void kernel(const void* w, int64_t w_is_bf16, const float* h, const int64_t* cols,
                       const int64_t* rows, const float* bias, float* out, int64_t nnz,
                       int64_t width) {
    if (w_is_bf16) {
        observed(static_cast<const at::BFloat16*>(w), h, cols, rows, bias, out, nnz, width);
    } else {
        observed(static_cast<const float*>(w), h, cols, rows, bias, out, nnz, width);
    }
}
"""

_ARGTYPES = [
    "const void*",
    "int64_t",
    "const float*",
    "const int64_t*",
    "const int64_t*",
    "const float*",
    "float*",
    "int64_t",
    "int64_t",
]


def native_kernel() -> Kernel | None:
    """The AVX-512 loop, or None where it does not apply, does not build or is switched off."""
    return _build() if enabled("gather_dot") else None


@functools.cache
def _build() -> Kernel | None:
    return load("observed-entry output loop", _ARGTYPES, _SOURCE)


def native_supports(w, h, cols, rows, bias) -> bool:
    """Whether the AVX-512 loop takes these: CPU, fp32 h and bias, fp32 or bf16 weights,
    int64 indices, all contiguous."""
    return (
        h.device.type == "cpu"
        and h.dtype == torch.float32
        and bias.dtype == torch.float32
        and w.dtype in (torch.float32, torch.bfloat16)
        and cols.dtype == torch.int64
        and rows.dtype == torch.int64
        and w.dim() == 2
        and w.shape[1] == h.shape[1]
        and all(t.is_contiguous() for t in (w, h, cols, rows, bias))
    )


def compiled_for(w: torch.Tensor) -> bool:
    """Whether the output weight `w` gets a compiled loop (else the eager form, which
    materialises (nnz x width) gathers: far slower at scale)."""
    return w.numel() >= MIN_WEIGHTS and (native_kernel() is not None or KERNEL.usable())


def observed_outputs(
    w: torch.Tensor, h: torch.Tensor, cols: torch.Tensor, rows: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """bias[cols] + rowwise dot(w[cols], h[rows]): (nnz,) in h's precision (fp32 for bf16)."""
    if not compiled_for(w):
        return _observed_outputs(w, h, cols, rows, bias)
    if native_supports(w, h, cols, rows, bias):
        run = native_kernel()
        if run is not None:
            out = torch.empty(cols.shape[0], dtype=h.dtype)
            run(
                w,
                int(w.dtype == torch.bfloat16),
                h,
                cols,
                rows,
                bias,
                out,
                out.shape[0],
                w.shape[1],
            )
            return out
    return KERNEL(
        w, h, cols, rows, bias, fallback=lambda: _observed_outputs(w, h, cols, rows, bias)
    )
