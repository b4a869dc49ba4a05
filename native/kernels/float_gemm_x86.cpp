// The x86 tile kernels of gemm.h for F16 and BF16 weights (AVX2 + F16C, AVX-512), each computing
// exactly the arithmetic gemm.h defines: four fp32 chains over k (k mod 4), one fused
// multiply-add per weight and column, in k order, joined as (acc0 + acc1) + (acc2 + acc3).
#include "kernels/tiles.h"

#if defined(SPECDEC_X86_KERNELS)

#include <immintrin.h>

#include <array>
#include <utility>

#define SPECDEC_TARGET_AVX512F __attribute__((target("avx512f,avx512bw,fma")))
#define SPECDEC_TARGET_AVX2F16C __attribute__((target("avx2,fma,f16c")))

namespace specdec::kernels::detail {

namespace {

// Prefetch distance in k steps (each step is 32 bytes of the tile).
constexpr int64_t PREFETCH_K = 64;

// 16 rows' weights of one k, widened to fp32
template <wtype T>
SPECDEC_TARGET_AVX512F inline __m512 widen16(const uint16_t * p) {
    const __m256i h = _mm256_load_si256((const __m256i *) p);
    if constexpr (T == wtype::f16) return _mm512_cvtph_ps(h);
    else return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// 8 rows' weights of one k, widened to fp32
template <wtype T>
SPECDEC_TARGET_AVX2F16C inline __m256 widen8(const uint16_t * p) {
    const __m128i h = _mm_load_si128((const __m128i *) p);
    if constexpr (T == wtype::f16) return _mm256_cvtph_ps(h);
    else return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// ---- AVX-512: one zmm = the 16 rows of a tile; C columns x 4 chains of accumulators ----------
template <wtype T, int C>
SPECDEC_TARGET_AVX512F void fcols_avx512(const uint8_t * wt, int64_t k, const float * act, float * out) {
    const uint16_t * w = (const uint16_t *) wt;
    __m512 acc[C][4];
    for (int c = 0; c < C; ++c) {
        for (int p = 0; p < 4; ++p) acc[c][p] = _mm512_setzero_ps();
    }
    for (int64_t i = 0; i < k; i += 4) {
        _mm_prefetch((const char *) (w + (i + PREFETCH_K) * TILE_ROWS), _MM_HINT_T0);
        _mm_prefetch((const char *) (w + (i + PREFETCH_K + 2) * TILE_ROWS), _MM_HINT_T0);
        __m512 wv[4];
        for (int p = 0; p < 4; ++p) wv[p] = widen16<T>(w + (i + p) * TILE_ROWS);
        for (int c = 0; c < C; ++c) {
            for (int p = 0; p < 4; ++p) acc[c][p] = _mm512_fmadd_ps(wv[p], _mm512_set1_ps(act[c * k + i + p]), acc[c][p]);
        }
    }
    for (int c = 0; c < C; ++c) {
        _mm512_storeu_ps(out + c * TILE_ROWS, _mm512_add_ps(_mm512_add_ps(acc[c][0], acc[c][1]), _mm512_add_ps(acc[c][2], acc[c][3])));
    }
}

// ---- AVX2 + F16C: the two 8-row halves of a tile one after the other ------------------------
template <wtype T, int C>
SPECDEC_TARGET_AVX2F16C void fcols_avx2(const uint8_t * wt, int64_t k, const float * act, float * out) {
    const uint16_t * w = (const uint16_t *) wt;
    for (int h = 0; h < 2; ++h) {
        __m256 acc[C][4];
        for (int c = 0; c < C; ++c) {
            for (int p = 0; p < 4; ++p) acc[c][p] = _mm256_setzero_ps();
        }
        for (int64_t i = 0; i < k; i += 4) {
            _mm_prefetch((const char *) (w + (i + PREFETCH_K) * TILE_ROWS), _MM_HINT_T0);
            __m256 wv[4];
            for (int p = 0; p < 4; ++p) wv[p] = widen8<T>(w + (i + p) * TILE_ROWS + 8 * h);
            for (int c = 0; c < C; ++c) {
                for (int p = 0; p < 4; ++p) acc[c][p] = _mm256_fmadd_ps(wv[p], _mm256_set1_ps(act[c * k + i + p]), acc[c][p]);
            }
        }
        for (int c = 0; c < C; ++c) {
            _mm256_storeu_ps(out + c * TILE_ROWS + 8 * h,
                             _mm256_add_ps(_mm256_add_ps(acc[c][0], acc[c][1]), _mm256_add_ps(acc[c][2], acc[c][3])));
        }
    }
}

using fcols_fn = void (*)(const uint8_t *, int64_t, const float *, float *);


template <wtype T> struct fkernels_of {
    template <int C> struct k512 { static constexpr fcols_fn fn = fcols_avx512<T, C>; };
    template <int C> struct kavx2 { static constexpr fcols_fn fn = fcols_avx2<T, C>; };
    static constexpr std::array<fcols_fn, 6> T512 = group_table<fcols_fn, k512>(std::make_index_sequence<6>());
    static constexpr std::array<fcols_fn, 2> TAVX2 = group_table<fcols_fn, kavx2>(std::make_index_sequence<2>());
};

} // namespace

template <wtype T> void ftile_avx512(const uint8_t * wt, int64_t k, const float * act, int64_t n, float * out) {
    run_groups(fkernels_of<T>::T512, wt, k, act, n, out);
}
template <wtype T> void ftile_avx2(const uint8_t * wt, int64_t k, const float * act, int64_t n, float * out) {
    run_groups(fkernels_of<T>::TAVX2, wt, k, act, n, out);
}

template void ftile_avx512<wtype::f16>(const uint8_t *, int64_t, const float *, int64_t, float *);
template void ftile_avx512<wtype::bf16>(const uint8_t *, int64_t, const float *, int64_t, float *);
template void ftile_avx2<wtype::f16>(const uint8_t *, int64_t, const float *, int64_t, float *);
template void ftile_avx2<wtype::bf16>(const uint8_t *, int64_t, const float *, int64_t, float *);

} // namespace specdec::kernels::detail

#endif // SPECDEC_X86_KERNELS
