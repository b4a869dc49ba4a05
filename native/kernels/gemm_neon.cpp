// The aarch64 tile kernels of gemm.h: the quantized types on the int8 dot product instructions
// (SDOT, "dotprod", chosen at run time: cpu_features.h), F16 and BF16 on NEON fused multiply-adds.
// Both compute exactly the arithmetic gemm.h defines.
//
// SDOT multiplies signed bytes, so the tiles' unsigned bytes are used as they are where they fit
// in int8 (4-bit values, Q6_K's 6-bit values: the offset is taken back with the activation sums,
// as on x86) and flipped back to signed for Q8_0 (q + 128 -> q, no correction).
#include "kernels/tiles.h"

#if defined(SPECDEC_NEON_KERNELS)

#include <arm_neon.h>

#include <array>
#include <utility>

#if defined(__clang__)
#define SPECDEC_TARGET_DOTPROD __attribute__((target("dotprod")))
#else
#define SPECDEC_TARGET_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

namespace specdec::kernels::detail {

namespace {

template <wtype T> inline int32_t sdot_init(const act_block & a) {
    return T == wtype::q8_0 ? 0 : int_init<T>(a);
}

// The four quarters (rows 4i..4i+3, 4 values each) of group g, as signed bytes.
template <wtype T>
SPECDEC_TARGET_DOTPROD inline void group_quarters(const uint8_t * wb, int g, int8x16_t * w) {
    for (int i = 0; i < 4; ++i) {
        if constexpr (tile_traits<T>::nibbles) {
            const uint8x16_t v = vld1q_u8(wb + 64 * (g & 3) + 16 * i);
            w[i] = vreinterpretq_s8_u8(g < 4 ? vandq_u8(v, vdupq_n_u8(0x0F)) : vshrq_n_u8(v, 4));
        } else if constexpr (T == wtype::q8_0) {
            w[i] = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(wb + 64 * g + 16 * i), vdupq_n_u8(0x80)));
        } else {
            w[i] = vreinterpretq_s8_u8(vld1q_u8(wb + 64 * g + 16 * i));
        }
    }
}

// s[c][i] += the dot products of groups [g0, g1) for column c, rows 4i..4i+3
template <wtype T, int C>
SPECDEC_TARGET_DOTPROD inline void dots(const uint8_t * wb, int g0, int g1, const int8x16_t (*a)[2], int32x4_t (*s)[4]) {
    for (int g = g0; g < g1; ++g) {
        int8x16_t w[4];
        group_quarters<T>(wb, g, w);
        for (int c = 0; c < C; ++c) {
            const int8x16_t av = a[c][g / 4];
            for (int i = 0; i < 4; ++i) {
                switch (g % 4) {  // the lane must be a constant
                    case 0: s[c][i] = vdotq_laneq_s32(s[c][i], w[i], av, 0); break;
                    case 1: s[c][i] = vdotq_laneq_s32(s[c][i], w[i], av, 1); break;
                    case 2: s[c][i] = vdotq_laneq_s32(s[c][i], w[i], av, 2); break;
                    default: s[c][i] = vdotq_laneq_s32(s[c][i], w[i], av, 3); break;
                }
            }
        }
    }
}

// The scales of rows 4q..4q+3 of block i (half h) of super-block sb, and the Q4_K min terms
// (tiles.h): d * sc and -(dmin * m) formed as scale_at / min_at form them.
template <wtype T> inline float32x4_t scales4(const uint8_t * sb, int64_t i, int h, int q) {
    using F = tile_traits<T>;
    const float32x4_t d = vld1q_f32((const float *) (sb + F::d_offset) + 4 * q);
    if constexpr (T == wtype::q4_k || T == wtype::q6_k) {
        const uint8_t * codes = sb + F::sc_offset(i, h) + 4 * q;
        float sc[4];
        for (int j = 0; j < 4; ++j) sc[j] = T == wtype::q4_k ? (float) codes[j] : (float) (int8_t) codes[j];
        return vmulq_f32(d, vld1q_f32(sc));
    } else {
        return d;
    }
}
template <wtype T> inline float32x4_t mins4(const uint8_t * sb, int64_t i, int q) {
    using F = tile_traits<T>;
    const uint8_t * codes = sb + F::m_offset(i) + 4 * q;
    float m[4];
    for (int j = 0; j < 4; ++j) m[j] = (float) codes[j];
    return vnegq_f32(vmulq_f32(vld1q_f32((const float *) (sb + F::dmin_offset) + 4 * q), vld1q_f32(m)));
}

template <wtype T, int C>
SPECDEC_TARGET_DOTPROD void cols_neon(const uint8_t * wt, int64_t nb, const act_block * act, float * out) {
    using F = tile_traits<T>;
    float32x4_t acc[C][4];
    for (int c = 0; c < C; ++c) {
        for (int i = 0; i < 4; ++i) acc[c][i] = vdupq_n_f32(0.0f);
    }
    for (int64_t b = 0; b < nb; ++b) {
        int64_t bi;
        const uint8_t * sb = super_block<T>(wt, b, bi);
        const uint8_t * wb = sb + bi * F::weight_bytes;
        int8x16_t a[C][2];
        int32x4_t s[C][4];
        for (int c = 0; c < C; ++c) {
            const act_block & ab = act[c * nb + b];
            a[c][0] = vld1q_s8((const int8_t *) ab.q4);
            a[c][1] = vld1q_s8((const int8_t *) ab.q4 + 16);
            for (int i = 0; i < 4; ++i) s[c][i] = vdupq_n_s32(sdot_init<T>(ab));
        }
        // acc = fma(scale * d, (float) s, acc) for the 4 quarters of each column
        const auto fold = [&](int h) {
            for (int c = 0; c < C; ++c) {
                const float d = act[c * nb + b].d;
                for (int i = 0; i < 4; ++i) {
                    const float32x4_t dd = vmulq_n_f32(scales4<T>(sb, bi, h, i), d);
                    acc[c][i] = vfmaq_f32(acc[c][i], dd, vcvtq_f32_s32(s[c][i]));
                }
            }
        };
        if constexpr (F::halves) {
            dots<T, C>(wb, 0, 4, a, s);
            fold(0);
            for (int c = 0; c < C; ++c) {
                for (int i = 0; i < 4; ++i) s[c][i] = vdupq_n_s32(int_init_hi<T>(act[c * nb + b]));
            }
            dots<T, C>(wb, 4, 8, a, s);
            fold(1);
        } else {
            dots<T, C>(wb, 0, 8, a, s);
            fold(0);
            if constexpr (F::mins) {
                for (int c = 0; c < C; ++c) {
                    const act_block & ab = act[c * nb + b];
                    for (int i = 0; i < 4; ++i) {
                        const float32x4_t md = vmulq_n_f32(mins4<T>(sb, bi, i), ab.d);
                        acc[c][i] = vfmaq_f32(acc[c][i], md, vdupq_n_f32((float) ab.sum));
                    }
                }
            }
        }
    }
    for (int c = 0; c < C; ++c) {
        for (int i = 0; i < 4; ++i) vst1q_f32(out + c * TILE_ROWS + 4 * i, acc[c][i]);
    }
}

// ---- F16 / BF16: 4 chains over k (k mod 4) for one column, 16 rows in 4 vectors ------------
template <wtype T> inline float32x4_t widen4(const uint16_t * p) {
    if constexpr (T == wtype::f16) return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
    else return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

template <wtype T>
void fcol_neon(const uint8_t * wt, int64_t k, const float * x, float * out) {
    const uint16_t * w = (const uint16_t *) wt;
    float32x4_t acc[4][4];  // [chain][row quarter]
    for (int p = 0; p < 4; ++p) {
        for (int i = 0; i < 4; ++i) acc[p][i] = vdupq_n_f32(0.0f);
    }
    for (int64_t kk = 0; kk < k; kk += 4) {
        for (int p = 0; p < 4; ++p) {
            const float xv = x[kk + p];
            for (int i = 0; i < 4; ++i) acc[p][i] = vfmaq_n_f32(acc[p][i], widen4<T>(w + (kk + p) * TILE_ROWS + 4 * i), xv);
        }
    }
    for (int i = 0; i < 4; ++i) {
        vst1q_f32(out + 4 * i, vaddq_f32(vaddq_f32(acc[0][i], acc[1][i]), vaddq_f32(acc[2][i], acc[3][i])));
    }
}

using cols_fn = void (*)(const uint8_t *, int64_t, const act_block *, float *);

} // namespace

// Columns in pairs (the registers hold two columns' accumulators), the last one alone: the
// arithmetic per column is the same either way.
template <wtype T> void tile_neon_dotprod(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out) {
    int64_t c = 0;
    for (; c + 2 <= n; c += 2) cols_neon<T, 2>(wt, nb, act + c * nb, out + c * TILE_ROWS);
    if (c < n) cols_neon<T, 1>(wt, nb, act + c * nb, out + c * TILE_ROWS);
}

template <wtype T> void ftile_neon(const uint8_t * wt, int64_t k, const float * act, int64_t n, float * out) {
    for (int64_t c = 0; c < n; ++c) fcol_neon<T>(wt, k, act + c * k, out + c * TILE_ROWS);
}

template void tile_neon_dotprod<wtype::q8_0>(const uint8_t *, int64_t, const act_block *, int64_t, float *);
template void tile_neon_dotprod<wtype::q4_0>(const uint8_t *, int64_t, const act_block *, int64_t, float *);
template void tile_neon_dotprod<wtype::q4_k>(const uint8_t *, int64_t, const act_block *, int64_t, float *);
template void tile_neon_dotprod<wtype::q6_k>(const uint8_t *, int64_t, const act_block *, int64_t, float *);
template void ftile_neon<wtype::f16>(const uint8_t *, int64_t, const float *, int64_t, float *);
template void ftile_neon<wtype::bf16>(const uint8_t *, int64_t, const float *, int64_t, float *);

} // namespace specdec::kernels::detail

#endif // SPECDEC_NEON_KERNELS
