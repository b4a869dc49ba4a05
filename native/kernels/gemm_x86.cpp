// The x86 tile kernels of gemm.h for the quantized types, each compiled for its instruction set with a target
// attribute and chosen at run time (cpu_features.h). All compute exactly the arithmetic that
// gemm.h defines: exact integer dot products per block (or half block), then one fp32
// multiply (the two scales) and one fused multiply-add per term, in block order. Integer sums
// are exact, so the order in which a block's groups enter them is free.
#include "kernels/tiles.h"

#if defined(SPECDEC_X86_KERNELS)

#include <immintrin.h>

#include <array>
#include <climits>
#include <cstdint>
#include <cstring>
#include <utility>

#define SPECDEC_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vnni,fma")))
#define SPECDEC_TARGET_AVXVNNI __attribute__((target("avx2,fma,avxvnni")))
#define SPECDEC_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace specdec::kernels::detail {

namespace {

// Software prefetch of the weights this many blocks ahead: when many columns make the loop
// compute-bound, the hardware prefetcher alone leaves it waiting on memory (measured on Q8_0:
// 16 columns went from 4.7 to 2.6 ms per 47 MB of weights).
constexpr int64_t PREFETCH_BLOCKS = 8;

// acc += dpbusd(a, broadcast of the 4 bytes at b): the broadcast folded into the instruction's
// memory operand ({1to16}), which the compiler does not do by itself; it frees one shuffle-port
// operation per multiply.
SPECDEC_TARGET_AVX512 inline __m512i dpbusd_bcast(__m512i acc, __m512i a, const int32_t * b) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(a), "m"(*b));
    return acc;
}

// The 16 rows' scales of block i (half h) of super-block sb, and the Q4_K min terms (tiles.h):
// d * sc and -(dmin * m) formed as scale_at / min_at form them.
template <wtype T>
SPECDEC_TARGET_AVX512 inline __m512 scales512(const uint8_t * sb, int64_t i, int h) {
    using F = tile_traits<T>;
    const __m512 d = _mm512_load_ps((const float *) (sb + F::d_offset));
    if constexpr (T == wtype::q4_k || T == wtype::q6_k) {
        const __m128i codes = _mm_load_si128((const __m128i *) (sb + F::sc_offset(i, h)));
        const __m512i sc = T == wtype::q4_k ? _mm512_cvtepu8_epi32(codes) : _mm512_cvtepi8_epi32(codes);
        return _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
    } else {
        return d;
    }
}
template <wtype T>
SPECDEC_TARGET_AVX512 inline __m512 mins512(const uint8_t * sb, int64_t i) {
    using F = tile_traits<T>;
    const __m512 dmin = _mm512_load_ps((const float *) (sb + F::dmin_offset));
    const __m512 m = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_load_si128((const __m128i *) (sb + F::m_offset(i)))));
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(_mm512_mul_ps(dmin, m)), _mm512_set1_epi32(INT32_MIN)));
}

// The same for the 8 rows of row half rh.
template <wtype T>
SPECDEC_TARGET_AVX2 inline __m256 scales256(const uint8_t * sb, int64_t i, int h, int rh) {
    using F = tile_traits<T>;
    const __m256 d = _mm256_load_ps((const float *) (sb + F::d_offset) + 8 * rh);
    if constexpr (T == wtype::q4_k || T == wtype::q6_k) {
        const __m128i codes = _mm_loadl_epi64((const __m128i *) (sb + F::sc_offset(i, h) + 8 * rh));
        const __m256i sc = T == wtype::q4_k ? _mm256_cvtepu8_epi32(codes) : _mm256_cvtepi8_epi32(codes);
        return _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc));
    } else {
        return d;
    }
}
template <wtype T>
SPECDEC_TARGET_AVX2 inline __m256 mins256(const uint8_t * sb, int64_t i, int rh) {
    using F = tile_traits<T>;
    const __m256 dmin = _mm256_load_ps((const float *) (sb + F::dmin_offset) + 8 * rh);
    const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *) (sb + F::m_offset(i) + 8 * rh))));
    return _mm256_xor_ps(_mm256_mul_ps(dmin, m), _mm256_castsi256_ps(_mm256_set1_epi32(INT32_MIN)));
}

// Bytes of weights and codes per block, on average: how far ahead the prefetch reaches.
template <wtype T> constexpr int64_t avg_block_bytes = tile_traits<T>::sb_bytes / tile_traits<T>::blocks_per_sb;

// The super-block and index of block b of a tile, and its weight bytes; prefetches ahead.
template <wtype T> inline const uint8_t * block_at(const uint8_t * wt, int64_t b, const uint8_t *& sb, int64_t & i) {
    sb = super_block<T>(wt, b, i);
    const uint8_t * wb = sb + i * tile_traits<T>::weight_bytes;
    for (int64_t l = 0; l < avg_block_bytes<T>; l += 64) {
        _mm_prefetch((const char *) wb + PREFETCH_BLOCKS * avg_block_bytes<T> + l, _MM_HINT_T0);
    }
    return wb;
}

// ---- AVX-512 VNNI: one zmm = the 16 rows of a tile ------------------------------------------
//   w[g]  : [16 rows x 4 bytes] u8 of group g (values 4g..4g+3 of the block)
//   dpbusd: s[r] += sum_j w[g][r][j] * a[4g + j]   (activations broadcast, s8)
// The C columns' integer dot products advance together, one group at a time: C independent
// dependency chains keep the VNNI units busy.
template <wtype T, int C>
SPECDEC_TARGET_AVX512 inline void dots_avx512(const uint8_t * wb, int g0, int g1, const act_block * act, int64_t nb,
                                              int64_t b, __m512i * s) {
    if constexpr (tile_traits<T>::nibbles) {
        // one load holds group g (low nibbles) and g + 4 (high nibbles)
        const __m512i m4 = _mm512_set1_epi8(0x0F);
        for (int g = g0; g < g1 && g < 4; ++g) {
            const __m512i v  = _mm512_load_si512((const void *) (wb + 64 * g));
            const __m512i lo = _mm512_and_si512(v, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            for (int c = 0; c < C; ++c) s[c] = dpbusd_bcast(s[c], lo, &act[c * nb + b].q4[g]);
            for (int c = 0; c < C; ++c) s[c] = dpbusd_bcast(s[c], hi, &act[c * nb + b].q4[g + 4]);
        }
    } else {
        for (int g = g0; g < g1; ++g) {
            const __m512i w = _mm512_load_si512((const void *) (wb + 64 * g));
            for (int c = 0; c < C; ++c) s[c] = dpbusd_bcast(s[c], w, &act[c * nb + b].q4[g]);
        }
    }
}

template <wtype T, int C>
SPECDEC_TARGET_AVX512 void cols_avx512(const uint8_t * wt, int64_t nb, const act_block * act, float * out) {
    using F = tile_traits<T>;
    __m512 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t * sb;
        int64_t i;
        const uint8_t * wb = block_at<T>(wt, b, sb, i);
        const __m512 dr = scales512<T>(sb, i, 0);
        __m512i s[C];
        for (int c = 0; c < C; ++c) s[c] = _mm512_set1_epi32(int_init<T>(act[c * nb + b]));
        if constexpr (F::halves) {
            dots_avx512<T, C>(wb, 0, 4, act, nb, b, s);
            for (int c = 0; c < C; ++c) {
                const act_block & a = act[c * nb + b];
                acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(dr, _mm512_set1_ps(a.d)), _mm512_cvtepi32_ps(s[c]), acc[c]);
                s[c] = _mm512_set1_epi32(int_init_hi<T>(a));
            }
            dots_avx512<T, C>(wb, 4, 8, act, nb, b, s);
            const __m512 dr1 = scales512<T>(sb, i, 1);
            for (int c = 0; c < C; ++c) {
                const __m512 dd = _mm512_mul_ps(dr1, _mm512_set1_ps(act[c * nb + b].d));
                acc[c] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(s[c]), acc[c]);
            }
        } else {
            dots_avx512<T, C>(wb, 0, 8, act, nb, b, s);
            for (int c = 0; c < C; ++c) {
                const __m512 dd = _mm512_mul_ps(dr, _mm512_set1_ps(act[c * nb + b].d));
                acc[c] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(s[c]), acc[c]);
            }
            if constexpr (F::mins) {
                const __m512 mr = mins512<T>(sb, i);
                for (int c = 0; c < C; ++c) {
                    const act_block & a = act[c * nb + b];
                    acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(mr, _mm512_set1_ps(a.d)), _mm512_set1_ps((float) a.sum), acc[c]);
                }
            }
        }
    }
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(out + c * TILE_ROWS, acc[c]);
}

// ---- AVX2 and AVX-VNNI: two ymm halves of 8 rows ---------------------------------------------
// The 8 groups of one row half, as unsigned bytes (nibbles unpacked).
template <wtype T>
SPECDEC_TARGET_AVX2 inline void groups_ymm(const uint8_t * wb, int h, __m256i * w) {
    if constexpr (tile_traits<T>::nibbles) {
        const __m256i m4 = _mm256_set1_epi8(0x0F);
        for (int g = 0; g < 4; ++g) {
            const __m256i v = _mm256_load_si256((const __m256i *) (wb + 64 * g + 32 * h));
            w[g]     = _mm256_and_si256(v, m4);
            w[g + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        }
    } else {
        for (int g = 0; g < 8; ++g) w[g] = _mm256_load_si256((const __m256i *) (wb + 64 * g + 32 * h));
    }
}

// The scales of one block for one row half, formed once for all the columns.
struct ymm_scales {
    __m256 d0, d1, m;  // first half's (or the block's) scales, second half's (Q6_K), min terms (Q4_K)
};
template <wtype T>
SPECDEC_TARGET_AVX2 inline ymm_scales block_scales_ymm(const uint8_t * sb, int64_t i, int rh) {
    using F = tile_traits<T>;
    ymm_scales out;
    out.d0 = scales256<T>(sb, i, 0, rh);
    out.d1 = F::halves ? scales256<T>(sb, i, 1, rh) : out.d0;
    out.m  = F::mins ? mins256<T>(sb, i, rh) : out.d0;
    return out;
}

// acc + one block's terms for a column, from its integer sums (s1: Q6_K's second half), in the
// order gemm.h defines.
template <wtype T>
SPECDEC_TARGET_AVX2 inline __m256 fold_ymm(__m256 acc, const ymm_scales & sc, const act_block & a, __m256i s0, __m256i s1) {
    using F = tile_traits<T>;
    const __m256 ad = _mm256_set1_ps(a.d);
    acc = _mm256_fmadd_ps(_mm256_mul_ps(sc.d0, ad), _mm256_cvtepi32_ps(s0), acc);
    if constexpr (F::halves) acc = _mm256_fmadd_ps(_mm256_mul_ps(sc.d1, ad), _mm256_cvtepi32_ps(s1), acc);
    if constexpr (F::mins) acc = _mm256_fmadd_ps(_mm256_mul_ps(sc.m, ad), _mm256_set1_ps((float) a.sum), acc);
    return acc;
}

// The integer sums of a column over one row half's 8 groups (the whole block, or the two halves
// for Q6_K), u8 weights x s8 activations to int32, per instruction set.
struct dot_vnni {
    template <wtype T>
    static SPECDEC_TARGET_AVXVNNI inline void sums(const __m256i * w, const act_block & a, __m256i & s0, __m256i & s1) {
        const int g_end = tile_traits<T>::halves ? 4 : 8;
        s0 = _mm256_set1_epi32(int_init<T>(a));
        for (int g = 0; g < g_end; ++g) s0 = _mm256_dpbusd_avx_epi32(s0, w[g], _mm256_set1_epi32(a.q4[g]));
        s1 = _mm256_set1_epi32(int_init_hi<T>(a));
        for (int g = g_end; g < 8 && tile_traits<T>::halves; ++g) s1 = _mm256_dpbusd_avx_epi32(s1, w[g], _mm256_set1_epi32(a.q4[g]));
    }
};
// AVX2 has no u8 x s8 dot instruction that cannot saturate: maddubs pairs stay within int16 for
// the types whose unsigned values are at most 63 (2 * 63 * 128 < 32768), then pairs of pairs go
// to int32. Q8_0's values (up to 255) use the sign trick instead: |w| (u8) x sign(a, w) (s8) on
// the signed weights (w holds them, wa their magnitudes), again exact.
struct dot_avx2 {
    static SPECDEC_TARGET_AVX2 inline __m256i pairs(__m256i s, __m256i u8, __m256i s8) {
        return _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(u8, s8), _mm256_set1_epi16(1)));
    }
    template <wtype T>
    static SPECDEC_TARGET_AVX2 inline void sums(const __m256i * w, const __m256i * wa, const act_block & a, __m256i & s0,
                                               __m256i & s1) {
        if constexpr (T == wtype::q8_0) {
            s0 = _mm256_setzero_si256();
            for (int g = 0; g < 8; ++g) s0 = pairs(s0, wa[g], _mm256_sign_epi8(_mm256_set1_epi32(a.q4[g]), w[g]));
            s1 = s0;
        } else {
            const int g_end = tile_traits<T>::halves ? 4 : 8;
            s0 = _mm256_set1_epi32(int_init<T>(a));
            for (int g = 0; g < g_end; ++g) s0 = pairs(s0, w[g], _mm256_set1_epi32(a.q4[g]));
            s1 = _mm256_set1_epi32(int_init_hi<T>(a));
            for (int g = g_end; g < 8 && tile_traits<T>::halves; ++g) s1 = pairs(s1, w[g], _mm256_set1_epi32(a.q4[g]));
        }
    }
};

template <int C> SPECDEC_TARGET_AVX2 inline void store_ymm(const __m256 (*acc)[2], float * out) {
    for (int c = 0; c < C; ++c) {
        _mm256_storeu_ps(out + c * TILE_ROWS, acc[c][0]);
        _mm256_storeu_ps(out + c * TILE_ROWS + 8, acc[c][1]);
    }
}

template <wtype T, int C>
SPECDEC_TARGET_AVXVNNI void cols_avx_vnni(const uint8_t * wt, int64_t nb, const act_block * act, float * out) {
    __m256 acc[C][2];
    for (int c = 0; c < C; ++c) acc[c][0] = acc[c][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t * sb;
        int64_t i;
        const uint8_t * wb = block_at<T>(wt, b, sb, i);
        for (int h = 0; h < 2; ++h) {
            __m256i w[8];
            groups_ymm<T>(wb, h, w);
            const ymm_scales sc = block_scales_ymm<T>(sb, i, h);
            for (int c = 0; c < C; ++c) {
                __m256i s0, s1;
                dot_vnni::sums<T>(w, act[c * nb + b], s0, s1);
                acc[c][h] = fold_ymm<T>(acc[c][h], sc, act[c * nb + b], s0, s1);
            }
        }
    }
    store_ymm<C>(acc, out);
}

// The same loop for AVX2 (no VNNI instruction in it).
template <wtype T, int C>
SPECDEC_TARGET_AVX2 void cols_avx2(const uint8_t * wt, int64_t nb, const act_block * act, float * out) {
    __m256 acc[C][2];
    for (int c = 0; c < C; ++c) acc[c][0] = acc[c][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t * sb;
        int64_t i;
        const uint8_t * wb = block_at<T>(wt, b, sb, i);
        for (int h = 0; h < 2; ++h) {
            __m256i w[8], wa[8];
            groups_ymm<T>(wb, h, w);
            if constexpr (T == wtype::q8_0) {
                for (int g = 0; g < 8; ++g) {
                    w[g]  = _mm256_xor_si256(w[g], _mm256_set1_epi8((char) 0x80));  // signed weights
                    wa[g] = _mm256_abs_epi8(w[g]);
                }
            }
            const ymm_scales sc = block_scales_ymm<T>(sb, i, h);
            for (int c = 0; c < C; ++c) {
                __m256i s0, s1;
                dot_avx2::sums<T>(w, wa, act[c * nb + b], s0, s1);
                acc[c][h] = fold_ymm<T>(acc[c][h], sc, act[c * nb + b], s0, s1);
            }
        }
    }
    store_ymm<C>(acc, out);
}

using cols_fn = void (*)(const uint8_t *, int64_t, const act_block *, float *);


template <wtype T> struct kernels_of {
    template <int C> struct k512 { static constexpr cols_fn fn = cols_avx512<T, C>; };
    template <int C> struct kvnni { static constexpr cols_fn fn = cols_avx_vnni<T, C>; };
    template <int C> struct kavx2 { static constexpr cols_fn fn = cols_avx2<T, C>; };
    static constexpr std::array<cols_fn, 16> T512  = group_table<cols_fn, k512>(std::make_index_sequence<16>());
    static constexpr std::array<cols_fn, 4>  TVNNI = group_table<cols_fn, kvnni>(std::make_index_sequence<4>());
    static constexpr std::array<cols_fn, 4>  TAVX2 = group_table<cols_fn, kavx2>(std::make_index_sequence<4>());
};

} // namespace

template <wtype T> void tile_avx512_vnni(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out) {
    run_groups(kernels_of<T>::T512, wt, nb, act, n, out);
}
template <wtype T> void tile_avx_vnni(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out) {
    run_groups(kernels_of<T>::TVNNI, wt, nb, act, n, out);
}
template <wtype T> void tile_avx2(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out) {
    run_groups(kernels_of<T>::TAVX2, wt, nb, act, n, out);
}

#define SPECDEC_INSTANTIATE(T)                                                                          \
    template void tile_avx512_vnni<T>(const uint8_t *, int64_t, const act_block *, int64_t, float *); \
    template void tile_avx_vnni<T>(const uint8_t *, int64_t, const act_block *, int64_t, float *);    \
    template void tile_avx2<T>(const uint8_t *, int64_t, const act_block *, int64_t, float *);
SPECDEC_INSTANTIATE(wtype::q8_0)
SPECDEC_INSTANTIATE(wtype::q4_0)
SPECDEC_INSTANTIATE(wtype::q4_k)
SPECDEC_INSTANTIATE(wtype::q6_k)
#undef SPECDEC_INSTANTIATE

} // namespace specdec::kernels::detail

#endif // SPECDEC_X86_KERNELS
