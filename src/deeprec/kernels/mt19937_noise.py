"""torch's CPU Mersenne Twister, vectorised: the draws of `torch.rand(n, dtype=float64) < keep`
from the default generator, bit for bit, with AVX-512.

torch's CPU generator is a standard MT19937 (ATen/core/MT19937RNGEngine.h); a float64
uniform takes two of its 32-bit outputs r1, r2 (in that order) as v = r1 << 32 | r2 and
is u = (v mod 2^53) * 2^-53. So `u < keep` is the integer test `v mod 2^53 < T` with
T = ceil(keep * 2^53) (clipped to [0, 2^53]). torch runs that generator one scalar word at a
time; here the 624-word state is twisted 16 words at a time (the twist reads words 1 and
397 ahead, or 227 behind once those are new, never inside a 16-word chunk), tempered 16
at a time, and pairs of words are compared as 8 64-bit lanes. The loop reads and writes the
generator's serialized state (`get_state()` bytes: left at offset 8, next at 16, the 624
state words as uint64 from 24), so the caller hands the result back with `set_state` and
the generator ends where `torch.rand` would leave it, mid-block or not.

The loop writes the mask's values directly: `kept` where u < keep, `dropped` elsewhere,
as raw bits of a 1-, 2-, 4- or 8-byte element (the caller computes them with torch's own
division, so they round as `mask.to(dtype).div_(keep)` does). It is compiled at first use
with Inductor's C++ toolchain (kernels/native.py) on CPUs where torch runs AVX-512 kernels;
elsewhere, or if the build fails, `kernel()` is None and kernels/dropout_noise.py keeps
torch's draw.
"""

from __future__ import annotations

import functools
import math

import torch

from deeprec.kernels import native
from deeprec.kernels.native import Kernel
from deeprec.kernels.switch import enabled

STATE_BYTES = 5056  # sizeof(CPUGeneratorImplState), what get_state() returns

_SOURCE = r"""
#include <torch/csrc/inductor/cpp_prefix.h>
#include <immintrin.h>
#include <cstring>
#include <stdexcept>

namespace {
constexpr int64_t MT_N = 624, MT_M = 397;
constexpr int64_t STATE_BYTES = 5056, LEFT_AT = 8, NEXT_AT = 16, WORDS_AT = 24;

// One MT19937 twist of s[0..624) in place, as at::mt19937::next_state: word i becomes
// s[(i + 397) % 624] ^ twist(s[i], s[(i + 1) % 624]), i ascending, so words read at i - 227
// and word 0 read by word 623 are already new. s has 16 spare words: s[624..640) mirror
// the new s[0..16) for the one chunk that reads across the end.
inline void twist_block(uint32_t* s) {
    const __m512i upper = _mm512_set1_epi32(static_cast<int>(0x80000000u));
    const __m512i matrix = _mm512_set1_epi32(static_cast<int>(0x9908b0dfu));
    const __m512i one = _mm512_set1_epi32(1);
    for (int64_t i = 0; i < MT_N; i += 16) {
        const __m512i cur = _mm512_loadu_si512(s + i);
        const __m512i nxt = _mm512_loadu_si512(s + i + 1);
        const __m512i far = _mm512_loadu_si512(i < MT_N - MT_M ? s + i + MT_M : s + i - (MT_N - MT_M));
        // y = (cur & upper) | (nxt & ~upper): bitwise select with `upper` as the chooser
        const __m512i y = _mm512_ternarylogic_epi32(upper, cur, nxt, 0xca);
        const __m512i odd = _mm512_maskz_mov_epi32(_mm512_test_epi32_mask(nxt, one), matrix);
        // far ^ (y >> 1) ^ odd
        const __m512i out = _mm512_ternarylogic_epi32(far, _mm512_srli_epi32(y, 1), odd, 0x96);
        _mm512_storeu_si512(s + i, out);
        if (i == 0) _mm512_storeu_si512(s + MT_N, out);
    }
}

inline __m512i temper(__m512i y) {
    y = _mm512_xor_si512(y, _mm512_srli_epi32(y, 11));
    y = _mm512_xor_si512(y, _mm512_and_si512(_mm512_slli_epi32(y, 7),
                                             _mm512_set1_epi32(static_cast<int>(0x9d2c5680u))));
    y = _mm512_xor_si512(y, _mm512_and_si512(_mm512_slli_epi32(y, 15),
                                             _mm512_set1_epi32(static_cast<int>(0xefc60000u))));
    return _mm512_xor_si512(y, _mm512_srli_epi32(y, 18));
}

// Up to 16 mask elements from the tempered words w[0..2 * count): element j is kept when
// (w[2j] << 32 | w[2j + 1]) mod 2^53 < threshold.
inline void write_mask(const uint32_t* w, int64_t count, char* out, int64_t elem,
                       __m512i threshold, int64_t kept, int64_t dropped) {
    const __m512i low53 = _mm512_set1_epi64((int64_t(1) << 53) - 1);
    const __mmask16 words_a = count >= 8 ? 0xffff : static_cast<__mmask16>((1u << (2 * count)) - 1);
    const __mmask16 words_b =
        count >= 16 ? 0xffff : count <= 8 ? 0 : static_cast<__mmask16>((1u << (2 * (count - 8))) - 1);
    // loaded as 64-bit lanes, w[2j] is the low half: rotate it to the high half (r1 << 32 | r2)
    const __m512i a = _mm512_rol_epi64(_mm512_maskz_loadu_epi32(words_a, w), 32);
    const __m512i b = _mm512_rol_epi64(_mm512_maskz_loadu_epi32(words_b, w + 16), 32);
    const __mmask8 ka = _mm512_cmplt_epu64_mask(_mm512_and_si512(a, low53), threshold);
    const __mmask8 kb = _mm512_cmplt_epu64_mask(_mm512_and_si512(b, low53), threshold);
    const __mmask16 keep = static_cast<__mmask16>(ka | (static_cast<unsigned>(kb) << 8));
    const __mmask16 valid = count >= 16 ? 0xffff : static_cast<__mmask16>((1u << count) - 1);
    if (elem == 4) {
        const __m512i v = _mm512_mask_blend_epi32(keep, _mm512_set1_epi32(static_cast<int>(dropped)),
                                                  _mm512_set1_epi32(static_cast<int>(kept)));
        _mm512_mask_storeu_epi32(out, valid, v);
    } else if (elem == 2) {
        const __m256i v = _mm256_mask_blend_epi16(keep, _mm256_set1_epi16(static_cast<short>(dropped)),
                                                  _mm256_set1_epi16(static_cast<short>(kept)));
        _mm256_mask_storeu_epi16(out, valid, v);
    } else if (elem == 1) {
        const __m128i v = _mm_mask_blend_epi8(keep, _mm_set1_epi8(static_cast<char>(dropped)),
                                              _mm_set1_epi8(static_cast<char>(kept)));
        _mm_mask_storeu_epi8(out, valid, v);
    } else {  // 8
        const __m512i d = _mm512_set1_epi64(dropped), k = _mm512_set1_epi64(kept);
        _mm512_mask_storeu_epi64(out, static_cast<__mmask8>(valid), _mm512_mask_blend_epi64(ka, d, k));
        _mm512_mask_storeu_epi64(out + 64, static_cast<__mmask8>(valid >> 8),
                                 _mm512_mask_blend_epi64(kb, d, k));
    }
}
}  // namespace

// state: get_state() bytes of the CPU generator, updated in place to where torch.rand(n,
// dtype=float64) leaves it. out: n elements of `elem` bytes (1, 2, 4 or 8): `kept` bits where
// the uniform is below threshold / 2^53, else `dropped`. Throws (writing nothing) on a state
// this loop does not model.
extern "C" void kernel(uint8_t* state, char* out, int64_t state_bytes, int64_t n, int64_t elem,
                       int64_t threshold, int64_t kept, int64_t dropped) {
    if (state_bytes != STATE_BYTES) throw std::runtime_error("unexpected generator state size");
    if (n < 0 || !(elem == 1 || elem == 2 || elem == 4 || elem == 8))
        throw std::runtime_error("bad size arguments");
    int32_t left;
    uint64_t next;
    std::memcpy(&left, state + LEFT_AT, sizeof(left));
    std::memcpy(&next, state + NEXT_AT, sizeof(next));
    // at::mt19937 reads state_[next++] after --left (twisting when it reaches 0): left - 1
    // words remain in this block, from `next` on
    if (left < 1 || left > MT_N || next > uint64_t(MT_N) || next + uint64_t(left - 1) > uint64_t(MT_N))
        throw std::runtime_error("generator state outside the modelled range");
    alignas(64) uint32_t s[MT_N + 16];
    {
        alignas(64) uint64_t wide[MT_N];
        std::memcpy(wide, state + WORDS_AT, sizeof(wide));
        for (int64_t i = 0; i < MT_N; ++i) s[i] = static_cast<uint32_t>(wide[i]);
        for (int64_t i = MT_N; i < MT_N + 16; ++i) s[i] = 0;
    }
    int64_t avail = left - 1, pos = static_cast<int64_t>(next);
    // tempered words not yet turned into mask elements (always < 32 between blocks)
    alignas(64) uint32_t buf[32 + MT_N + 16];
    int64_t have = 0, words_left = 2 * n, done = 0;
    const __m512i thr = _mm512_set1_epi64(threshold);
    while (words_left > 0) {
        if (avail == 0) {
            twist_block(s);
            pos = 0;
            avail = MT_N;
        }
        const int64_t take = avail < words_left ? avail : words_left;
        for (int64_t i = 0; i < take; i += 16) {
            const int64_t rest = take - i;
            const __mmask16 m = rest >= 16 ? 0xffff : static_cast<__mmask16>((1u << rest) - 1);
            _mm512_mask_storeu_epi32(buf + have + i, m, temper(_mm512_maskz_loadu_epi32(m, s + pos + i)));
        }
        pos += take;
        avail -= take;
        words_left -= take;
        have += take;
        int64_t used = 0;
        for (; have - used >= 32; used += 32, done += 16) {
            write_mask(buf + used, 16, out + done * elem, elem, thr, kept, dropped);
        }
        if (used) {
            std::memmove(buf, buf + used, (have - used) * sizeof(uint32_t));
            have -= used;
        }
    }
    if (have) write_mask(buf, have / 2, out + done * elem, elem, thr, kept, dropped);  // have is even
    {
        alignas(64) uint64_t wide[MT_N];
        for (int64_t i = 0; i < MT_N; ++i) wide[i] = s[i];
        std::memcpy(state + WORDS_AT, wide, sizeof(wide));
    }
    const int32_t new_left = static_cast<int32_t>(avail + 1);
    const uint64_t new_next = static_cast<uint64_t>(pos);
    std::memcpy(state + LEFT_AT, &new_left, sizeof(new_left));
    std::memcpy(state + NEXT_AT, &new_next, sizeof(new_next));
}
"""

_ARGTYPES = [
    "uint8_t*",
    "char*",
    "int64_t",
    "int64_t",
    "int64_t",
    "int64_t",
    "int64_t",
    "int64_t",
]

_BITS = {
    torch.float32: torch.int32,
    torch.float64: torch.int64,
    torch.bfloat16: torch.int16,
    torch.float16: torch.int16,
    torch.bool: torch.uint8,
}


def kernel() -> Kernel | None:
    """The compiled loop, or None where it does not apply (no AVX-512), does not build or
    is switched off (kernels.switch)."""
    return _build() if enabled("mt19937_noise") else None


@functools.cache
def _build() -> Kernel | None:
    return native.load("vectorised MT19937 dropout draw", _ARGTYPES, _SOURCE)


def supports(like: torch.Tensor) -> bool:
    """Whether the loop draws `like`'s mask: a CPU tensor of a float dtype it writes."""
    return like.device.type == "cpu" and like.dtype in _BITS and like.dtype != torch.bool


def threshold(keep: float) -> int:
    """T with `u < keep` <=> `u * 2^53 < T` for every float64 uniform torch draws."""
    if not keep > 0.0:  # also NaN: nothing is below it
        return 0
    if keep >= 1.0:
        return 1 << 53
    return math.ceil(math.ldexp(keep, 53))  # exact: keep * 2^53 is a double


@functools.lru_cache(maxsize=64)
def mask_values(dtype: torch.dtype, keep: float) -> tuple[int, int] | None:
    """Bits of (kept, dropped) in `dtype`: 1 / keep and 0 / keep, divided by torch as
    `mask.to(dtype).div_(keep)` divides (bool: 1 and 0). None when one is a NaN (keep 0 or
    NaN, or 0 in `dtype`'s division): torch's vector and scalar loops give NaNs of different
    bits, which only torch's own draw reproduces."""
    if dtype == torch.bool:
        return 1, 0
    values = torch.tensor([1.0, 0.0], dtype=dtype).repeat_interleave(64).div_(keep)
    if values.isnan().any():
        return None
    bits = values.view(_BITS[dtype])
    return int(bits[0]), int(bits[64])


def keep_mask(run: Kernel, shape, dtype: torch.dtype, keep: float) -> torch.Tensor | None:
    """`torch.lt(torch.rand(shape, dtype=float64), keep).to(dtype).div_(keep)` from the
    default generator, advanced as torch.rand advances it; None (nothing drawn) when the
    mask would hold NaNs or the generator's state is one the loop does not model."""
    values = mask_values(dtype, keep)
    if values is None:
        return None
    kept, dropped = values
    out = torch.empty(shape, dtype=dtype)
    generator = torch.default_generator
    state = generator.get_state()
    try:
        run(
            state,
            out,
            state.numel(),
            out.numel(),
            out.element_size(),
            threshold(keep),
            kept,
            dropped,
        )
    except RuntimeError:
        return None
    generator.set_state(state)
    return out
