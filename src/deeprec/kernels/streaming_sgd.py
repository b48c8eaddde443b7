"""The bf16 momentum-SGD update (mirrored_sgd) as a hand-written AVX-512 loop whose bf16
weight copy is written with streaming (non-temporal) stores.

The update is memory-bound: per weight it reads the fp32 weight and momentum and the bf16
gradient and writes the weight, momentum and bf16 copy. The weight and momentum are read
before they are written, so their stores hit cache lines already loaded; the copy is not
read, so an ordinary store first reads its line from memory (read-for-ownership): 2 more
bytes per weight for nothing. A streaming store skips that read. On the development CPU
(AMD Zen 4, 2 threads, caches flushed first) an update of 19.8M weights took 8.2 ms as the
Inductor-generated loop and 7.7 ms here (`benchmarks/optimizer_update.py`,
docs/results/optimizer_update.json), with the same values (SGD's operations, the copy
rounded to nearest even; tests compare it with torch.optim.SGD).

The loop is compiled at first use with Inductor's C++ toolchain (kernels/native.py). It is used on CPUs where torch runs AVX-512
kernels; elsewhere, or if compiling fails, `kernel()` is None and mirrored_sgd keeps its
compiled update.
"""

from __future__ import annotations

import functools

import torch

from deeprec.kernels import native
from deeprec.kernels.native import Kernel
from deeprec.kernels.switch import enabled

_SOURCE = r"""
#include <torch/csrc/inductor/cpp_prefix.h>
#include <immintrin.h>

static inline void scalar_update(float* w, float* m, float g, at::BFloat16* w_low, int64_t i,
                                 float lr, float mu, float wd) {
    const float d = g + wd * w[i];
    const float m_new = m[i] * mu + d;
    m[i] = m_new;
    const float w_new = w[i] - lr * m_new;
    w[i] = w_new;
    if (w_low) w_low[i] = at::BFloat16(w_new);
}

// g_is_bf16: the gradient is bf16 (else fp32); has_low: write w_low (else it is ignored)
extern "C" void kernel(float* w, float* m, const void* g_ptr, at::BFloat16* low_ptr,
                       float lr, float mu, float wd, int64_t n, int64_t g_is_bf16,
                       int64_t has_low) {
    const at::BFloat16* g16 = static_cast<const at::BFloat16*>(g_ptr);
    const float* g32 = static_cast<const float*>(g_ptr);
    at::BFloat16* w_low = has_low ? low_ptr : nullptr;
    auto grad = [&](int64_t i) { return g_is_bf16 ? static_cast<float>(g16[i]) : g32[i]; };
    int64_t head = 0;  // scalar steps until the copy is 32-byte aligned (streaming stores)
    if (w_low) {
        while (head < n && (reinterpret_cast<uintptr_t>(w_low + head) & 31) != 0) {
            scalar_update(w, m, grad(head), w_low, head, lr, mu, wd);
            ++head;
        }
    }
    const int64_t body = head + ((n - head) / 16) * 16;
    const __m512 v_lr = _mm512_set1_ps(lr), v_mu = _mm512_set1_ps(mu), v_wd = _mm512_set1_ps(wd);
    #pragma omp parallel for schedule(static)
    for (int64_t i = head; i < body; i += 16) {
        const __m512 v_w = _mm512_loadu_ps(w + i);
        const __m512 v_m = _mm512_loadu_ps(m + i);
        __m512 v_g;
        if (g_is_bf16) {
            const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g16 + i));
            v_g = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
        } else {
            v_g = _mm512_loadu_ps(g32 + i);
        }
        const __m512 d = _mm512_add_ps(v_g, _mm512_mul_ps(v_wd, v_w));
        const __m512 m_new = _mm512_add_ps(_mm512_mul_ps(v_m, v_mu), d);
        const __m512 w_new = _mm512_sub_ps(v_w, _mm512_mul_ps(v_lr, m_new));
        _mm512_storeu_ps(m + i, m_new);
        _mm512_storeu_ps(w + i, w_new);
        if (w_low) {
            _mm256_stream_si256(reinterpret_cast<__m256i*>(w_low + i), at::vec::cvtfp32_bf16(w_new));
        }
    }
    _mm_sfence();
    for (int64_t i = body; i < n; ++i) scalar_update(w, m, grad(i), w_low, i, lr, mu, wd);
}
"""

_ARGTYPES = [
    "float*",
    "float*",
    "const void*",
    "at::BFloat16*",
    "float",
    "float",
    "float",
    "int64_t",
    "int64_t",
    "int64_t",
]


def kernel() -> Kernel | None:
    """The compiled loop, or None where it does not apply (no AVX-512), does not build or
    is switched off (kernels.switch)."""
    return _build() if enabled("streaming_sgd") else None


@functools.cache
def _build() -> Kernel | None:
    return native.load("streaming bf16 SGD update", _ARGTYPES, _SOURCE)


def supports(w: torch.Tensor, m: torch.Tensor, g: torch.Tensor, w_low) -> bool:
    """Whether one tensor's update fits the loop: contiguous CPU fp32 weight and momentum,
    a bf16 or fp32 gradient of the same size, a bf16 copy (or none)."""
    tensors = [w, m, g] + ([] if w_low is None else [w_low])
    return (
        w.device.type == "cpu"
        and w.dtype == torch.float32
        and m.dtype == torch.float32
        and g.dtype in (torch.bfloat16, torch.float32)
        and (w_low is None or w_low.dtype == torch.bfloat16)
        and all(t.is_contiguous() and t.numel() == w.numel() for t in tensors)
    )


def update(run: Kernel, w, m, g, w_low, lr: float, mu: float, wd: float) -> None:
    """In place: m = mu * m + (g + wd * w); w -= lr * m; w_low = bf16(w) if given."""
    low = w_low if w_low is not None else w  # ignored by the loop (has_low = 0)
    run(
        w,
        m,
        g,
        low,
        float(lr),
        float(mu),
        float(wd),
        w.numel(),
        int(g.dtype == torch.bfloat16),
        int(w_low is not None),
    )
