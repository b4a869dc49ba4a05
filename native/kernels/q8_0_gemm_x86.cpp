// The x86 tile kernels of q8_0_gemm.h, each compiled for its instruction set with a target
// attribute and chosen at run time (cpu_features.h). All three compute exactly the arithmetic
// that q8_0_gemm.h defines: integer dot products per block, then one fp32 multiply (the two
// scales) and one fused multiply-add per block, in block order.
#include "kernels/q8_0_tiles.h"

#if defined(SPECDEC_X86_KERNELS)

#include <immintrin.h>

#include <array>
#include <cstring>
#include <utility>

#define SPECDEC_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vnni,fma")))
#define SPECDEC_TARGET_AVXVNNI __attribute__((target("avx2,fma,avxvnni")))
#define SPECDEC_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace specdec::kernels::detail {

namespace {

constexpr int64_t SCALES_OFFSET = 8 * TILE_ROWS * 4;
// Software prefetch of the weights this many blocks ahead: when many columns make the loop
// compute-bound, the hardware prefetcher alone leaves it waiting on memory (measured: 16
// columns went from 4.7 to 2.6 ms per 47 MB of weights).
constexpr int64_t PREFETCH_AHEAD = 8 * TILE_BLOCK_BYTES;

// acc += dpbusd(a, broadcast of the 4 bytes at b): the broadcast folded into the instruction's
// memory operand ({1to16}), which the compiler does not do by itself; it frees one shuffle-port
// operation per multiply.
SPECDEC_TARGET_AVX512 inline __m512i dpbusd_bcast(__m512i acc, __m512i a, const int32_t * b) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(a), "m"(*b));
    return acc;
}

// ---- AVX-512 VNNI: one zmm = the 16 rows of a tile ------------------------------------------
//   w[g]  : [16 rows x 4 bytes] u8 (qs + 128) of group g (values 4g..4g+3 of the block)
//   dpbusd: s[r] += sum_j w[g][r][j] * a[4g + j]   (activations broadcast, s8)
template <int C>
SPECDEC_TARGET_AVX512 void cols_avx512(const uint8_t * wt, int64_t nb, const act_block * act, float * out) {
    __m512 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t * wb = wt + b * TILE_BLOCK_BYTES;
        for (int64_t l = 0; l < TILE_BLOCK_BYTES; l += 64) _mm_prefetch((const char *) wb + PREFETCH_AHEAD + l, _MM_HINT_T0);
        // the C columns' integer dot products advance together, one group at a time: C
        // independent dependency chains keep the VNNI units busy
        __m512i s[C];
        for (int c = 0; c < C; ++c) s[c] = _mm512_set1_epi32(act[c * nb + b].corr);
        for (int g = 0; g < 8; ++g) {
            const __m512i w = _mm512_load_si512((const void *) (wb + 64 * g));
            for (int c = 0; c < C; ++c) s[c] = dpbusd_bcast(s[c], w, &act[c * nb + b].q4[g]);
        }
        const __m512 dr = _mm512_load_ps((const float *) (wb + SCALES_OFFSET));
        for (int c = 0; c < C; ++c) {
            const __m512 dd = _mm512_mul_ps(dr, _mm512_set1_ps(act[c * nb + b].d));
            acc[c] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(s[c]), acc[c]);
        }
    }
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(out + c * TILE_ROWS, acc[c]);
}

// ---- AVX-VNNI: two ymm halves of 8 rows ----------------------------------------------------
template <int C>
SPECDEC_TARGET_AVXVNNI void cols_avx_vnni(const uint8_t * wt, int64_t nb, const act_block * act, float * out) {
    __m256 acc[C][2];
    for (int c = 0; c < C; ++c) acc[c][0] = acc[c][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t * wb = wt + b * TILE_BLOCK_BYTES;
        for (int64_t l = 0; l < TILE_BLOCK_BYTES; l += 64) _mm_prefetch((const char *) wb + PREFETCH_AHEAD + l, _MM_HINT_T0);
        for (int h = 0; h < 2; ++h) {
            __m256i w[8];
            for (int g = 0; g < 8; ++g) w[g] = _mm256_load_si256((const __m256i *) (wb + 64 * g + 32 * h));
            const __m256 dr = _mm256_load_ps((const float *) (wb + SCALES_OFFSET) + 8 * h);
            for (int c = 0; c < C; ++c) {
                const act_block & a = act[c * nb + b];
                __m256i s = _mm256_set1_epi32(a.corr);
                for (int g = 0; g < 8; ++g) s = _mm256_dpbusd_avx_epi32(s, w[g], _mm256_set1_epi32(a.q4[g]));
                const __m256 dd = _mm256_mul_ps(dr, _mm256_set1_ps(a.d));
                acc[c][h] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), acc[c][h]);
            }
        }
    }
    for (int c = 0; c < C; ++c) {
        _mm256_storeu_ps(out + c * TILE_ROWS, acc[c][0]);
        _mm256_storeu_ps(out + c * TILE_ROWS + 8, acc[c][1]);
    }
}

// ---- AVX2: no u8 x s8 dot instruction that cannot saturate, so signed weights and the
// sign trick: |w| (u8) x sign(a, w) (s8) pairs stay within int16 (|w| <= 128, |a| <= 127),
// then pairs of pairs to int32. The dot products are again exact, so no correction term.
template <int C>
SPECDEC_TARGET_AVX2 void cols_avx2(const uint8_t * wt, int64_t nb, const act_block * act, float * out) {
    const __m256i flip = _mm256_set1_epi8((char) 0x80);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[C][2];
    for (int c = 0; c < C; ++c) acc[c][0] = acc[c][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t * wb = wt + b * TILE_BLOCK_BYTES;
        for (int64_t l = 0; l < TILE_BLOCK_BYTES; l += 64) _mm_prefetch((const char *) wb + PREFETCH_AHEAD + l, _MM_HINT_T0);
        for (int h = 0; h < 2; ++h) {
            __m256i ws[8], wa[8];
            for (int g = 0; g < 8; ++g) {
                ws[g] = _mm256_xor_si256(_mm256_load_si256((const __m256i *) (wb + 64 * g + 32 * h)), flip);
                wa[g] = _mm256_abs_epi8(ws[g]);
            }
            const __m256 dr = _mm256_load_ps((const float *) (wb + SCALES_OFFSET) + 8 * h);
            for (int c = 0; c < C; ++c) {
                const act_block & a = act[c * nb + b];
                __m256i s = _mm256_setzero_si256();
                for (int g = 0; g < 8; ++g) {
                    const __m256i sa = _mm256_sign_epi8(_mm256_set1_epi32(a.q4[g]), ws[g]);
                    s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(wa[g], sa), ones));
                }
                const __m256 dd = _mm256_mul_ps(dr, _mm256_set1_ps(a.d));
                acc[c][h] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), acc[c][h]);
            }
        }
    }
    for (int c = 0; c < C; ++c) {
        _mm256_storeu_ps(out + c * TILE_ROWS, acc[c][0]);
        _mm256_storeu_ps(out + c * TILE_ROWS + 8, acc[c][1]);
    }
}

using cols_fn = void (*)(const uint8_t *, int64_t, const act_block *, float *);

template <template <int> class K, size_t... I>
constexpr std::array<cols_fn, sizeof...(I)> table(std::index_sequence<I...>) {
    return { K<(int) I + 1>::fn... };
}

template <int C> struct k512 { static constexpr cols_fn fn = cols_avx512<C>; };
template <int C> struct kvnni { static constexpr cols_fn fn = cols_avx_vnni<C>; };
template <int C> struct kavx2 { static constexpr cols_fn fn = cols_avx2<C>; };

// Columns go in groups of W (as many accumulators as the registers hold), the rest in one
// smaller group: the arithmetic per column is the same in every group size.
template <int W, const std::array<cols_fn, W> & T>
inline void run_cols(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out) {
    int64_t c = 0;
    for (; c + W <= n; c += W) T[W - 1](wt, nb, act + c * nb, out + c * TILE_ROWS);
    if (c < n) T[n - c - 1](wt, nb, act + c * nb, out + c * TILE_ROWS);
}

constexpr std::array<cols_fn, 16> T512  = table<k512>(std::make_index_sequence<16>());
constexpr std::array<cols_fn, 4>  TVNNI = table<kvnni>(std::make_index_sequence<4>());
constexpr std::array<cols_fn, 4>  TAVX2 = table<kavx2>(std::make_index_sequence<4>());

} // namespace

void tile_avx512_vnni(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out) {
    run_cols<16, T512>(wt, nb, act, n, out);
}

void tile_avx_vnni(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out) {
    run_cols<4, TVNNI>(wt, nb, act, n, out);
}

void tile_avx2(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out) {
    run_cols<4, TAVX2>(wt, nb, act, n, out);
}

} // namespace specdec::kernels::detail

#endif // SPECDEC_X86_KERNELS
