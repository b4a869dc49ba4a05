#include "kernels/attention.h"

#include "ggml-cpu.h"

#include <algorithm>
#if defined(SPECDEC_X86_KERNELS)
#include <immintrin.h>
#endif
#include <cmath>
#include <vector>

namespace specdec::kernels {

namespace {

constexpr int LANES = 16;

// dot product with LANES partial sums and a fixed reduction: the same operations on every
// instruction set (the compiler vectorizes the lane loop; fma is exact whatever the unit)
__attribute__((always_inline)) inline float dot(const float * a, const float * b, int64_t n) {
    float acc[LANES] = {};
    int64_t d = 0;
    for (; d + LANES <= n; d += LANES) {
        for (int l = 0; l < LANES; ++l) acc[l] = std::fma(a[d + l], b[d + l], acc[l]);
    }
    for (int l = 0; d + l < n; ++l) acc[l] = std::fma(a[d + l], b[d + l], acc[l]);
    for (int w = LANES / 2; w >= 1; w /= 2) {
        for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
    }
    return acc[0];
}

struct scratch {
    std::vector<float> k, v, s;
};

__attribute__((always_inline)) inline void item_impl(const attn_shape & sh, const float * q, const ggml_fp16_t * k,
        size_t k_stride, const ggml_fp16_t * v, size_t v_stride, const int32_t * cells, int64_t n_cells, int64_t h,
        float * out) {
    thread_local scratch sc;
    const int64_t hd = sh.head_dim;
    const int64_t g  = sh.n_head / sh.n_head_kv;
    sc.k.resize((size_t) (n_cells * hd));
    sc.v.resize((size_t) (n_cells * hd));
    sc.s.resize((size_t) n_cells);
    // this head's K and V rows of the allowed cells, widened once for the g query heads
    for (int64_t i = 0; i < n_cells; ++i) {
        const char * kr = (const char *) k + (size_t) cells[i] * k_stride + (size_t) (h * hd) * sizeof(ggml_fp16_t);
        const char * vr = (const char *) v + (size_t) cells[i] * v_stride + (size_t) (h * hd) * sizeof(ggml_fp16_t);
        ggml_cpu_fp16_to_fp32((const ggml_fp16_t *) kr, sc.k.data() + i * hd, hd);
        ggml_cpu_fp16_to_fp32((const ggml_fp16_t *) vr, sc.v.data() + i * hd, hd);
    }
    for (int64_t j = 0; j < g; ++j) {
        const int64_t hq = h * g + j;
        const float * qh = q + hq * hd;
        float * o = out + hq * hd;
        float mx = -INFINITY;
        for (int64_t i = 0; i < n_cells; ++i) {
            sc.s[i] = dot(qh, sc.k.data() + i * hd, hd) * sh.scale;
            mx = std::max(mx, sc.s[i]);
        }
        float sum = 0.0f;
        for (int64_t d = 0; d < hd; ++d) o[d] = 0.0f;
        for (int64_t i = 0; i < n_cells; ++i) {
            const float e = std::exp(sc.s[i] - mx);
            sum += e;
            const float * vr = sc.v.data() + i * hd;
            for (int64_t d = 0; d < hd; ++d) o[d] = std::fma(e, vr[d], o[d]);
        }
        const float inv = n_cells > 0 ? 1.0f / sum : 0.0f;
        for (int64_t d = 0; d < hd; ++d) o[d] *= inv;
    }
}

void item_generic(const attn_shape & sh, const float * q, const ggml_fp16_t * k, size_t ks, const ggml_fp16_t * v,
                  size_t vs, const int32_t * cells, int64_t n, int64_t h, float * out) {
    item_impl(sh, q, k, ks, v, vs, cells, n, h, out);
}

#if defined(SPECDEC_X86_KERNELS)
// AVX-512 with the F16 rows widened in registers. The same operations as item_impl: a zmm
// accumulator is the 16 partial sums of dot(), and the reduction below adds lanes l and l + 8,
// then l and l + 4, l + 2, l + 1, as dot() does.
__attribute__((target("avx512f,fma"))) void item_avx512(const attn_shape & sh, const float * q, const ggml_fp16_t * k,
        size_t ks, const ggml_fp16_t * v, size_t vs, const int32_t * cells, int64_t n, int64_t h, float * out) {
    const int64_t hd = sh.head_dim;
    const int64_t g  = sh.n_head / sh.n_head_kv;
    if (hd % LANES != 0 || hd > 256 || g > 16) {
        item_impl(sh, q, k, ks, v, vs, cells, n, h, out);
        return;
    }
    const int64_t nv = hd / LANES;
    thread_local std::vector<float> scores;
    scores.resize((size_t) (g * n));
    for (int64_t i = 0; i < n; ++i) {
        const ggml_fp16_t * kr = (const ggml_fp16_t *) ((const char *) k + (size_t) cells[i] * ks) + h * hd;
        __m512 kf[16];
        for (int64_t t = 0; t < nv; ++t) kf[t] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (kr + t * LANES)));
        for (int64_t j = 0; j < g; ++j) {
            const float * qh = q + (h * g + j) * hd;
            __m512 acc = _mm512_setzero_ps();
            for (int64_t t = 0; t < nv; ++t) acc = _mm512_fmadd_ps(_mm512_loadu_ps(qh + t * LANES), kf[t], acc);
            const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1)));
            const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
            const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            const float  s1 = _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
            scores[j * n + i] = s1 * sh.scale;
        }
    }
    float mx[16], sum[16];
    alignas(64) float o[16 * 256];
    for (int64_t j = 0; j < g; ++j) {
        mx[j] = -INFINITY;
        for (int64_t i = 0; i < n; ++i) mx[j] = std::max(mx[j], scores[j * n + i]);
        sum[j] = 0.0f;
        for (int64_t d = 0; d < hd; ++d) o[j * hd + d] = 0.0f;
    }
    for (int64_t i = 0; i < n; ++i) {
        const ggml_fp16_t * vr = (const ggml_fp16_t *) ((const char *) v + (size_t) cells[i] * vs) + h * hd;
        __m512 vf[16];
        for (int64_t t = 0; t < nv; ++t) vf[t] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (vr + t * LANES)));
        for (int64_t j = 0; j < g; ++j) {
            const float e = std::exp(scores[j * n + i] - mx[j]);
            sum[j] += e;
            const __m512 ev = _mm512_set1_ps(e);
            for (int64_t t = 0; t < nv; ++t) {
                float * op = o + j * hd + t * LANES;
                _mm512_store_ps(op, _mm512_fmadd_ps(ev, vf[t], _mm512_load_ps(op)));
            }
        }
    }
    for (int64_t j = 0; j < g; ++j) {
        const float inv = n > 0 ? 1.0f / sum[j] : 0.0f;
        for (int64_t d = 0; d < hd; ++d) out[(h * g + j) * hd + d] = o[j * hd + d] * inv;
    }
}

__attribute__((target("avx2,fma"))) void item_avx2(const attn_shape & sh, const float * q, const ggml_fp16_t * k,
        size_t ks, const ggml_fp16_t * v, size_t vs, const int32_t * cells, int64_t n, int64_t h, float * out) {
    item_impl(sh, q, k, ks, v, vs, cells, n, h, out);
}
#endif

} // namespace

void attention_item(isa kernel, const attn_shape & sh, const float * q, const ggml_fp16_t * k, size_t k_stride,
                    const ggml_fp16_t * v, size_t v_stride, const int32_t * cells, int64_t n_cells, int64_t h, float * out) {
    switch (kernel) {
#if defined(SPECDEC_X86_KERNELS)
        case isa::avx512_vnni:
            item_avx512(sh, q, k, k_stride, v, v_stride, cells, n_cells, h, out);
            return;
        case isa::avx_vnni:
        case isa::avx2:
            item_avx2(sh, q, k, k_stride, v, v_stride, cells, n_cells, h, out);
            return;
#endif
        default:
            item_generic(sh, q, k, k_stride, v, v_stride, cells, n_cells, h, out);
    }
}

} // namespace specdec::kernels
