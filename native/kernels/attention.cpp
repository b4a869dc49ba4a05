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
#define SPECDEC_AVX512 __attribute__((target("avx512f,fma")))

// e^x for x <= 0 (softmax weights): x = n ln2 + r, |r| <= ln2/2, e^r by its Taylor polynomial
// to degree 6 (relative error ~2e-7), scaled by 2^n. Lanes below -87 give 0.
SPECDEC_AVX512 inline __m512 exp512(__m512 x) {
    const __m512 n  = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512 e = _mm512_scalef_ps(p, n);
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ), e);
}

// sum of 16 lanes in a fixed order
SPECDEC_AVX512 inline float hsum512(__m512 v) {
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// AVX-512 attention for head sizes of NV x 16. The arithmetic of one row (its own definition,
// used for every row on this instruction set):
//   scores: for each cell, 16-lane products over the head (q . k, lane = dim mod 16), reduced
//           8 cells at a time by one fixed add tree (a cell's result does not depend on its
//           neighbours: partial groups are padded with copies);
//   softmax: exp512 per cell; the sum in 16 lanes by list position, then hsum512;
//   output: sum over cells in list order of e * v (16-lane fma), times 1 / sum.
template <int NV>
SPECDEC_AVX512 void item512(const attn_shape & sh, const float * q, const ggml_fp16_t * k, size_t ks,
                            const ggml_fp16_t * v, size_t vs, const int32_t * cells, int64_t n, int64_t h, float * out) {
    constexpr int64_t hd = NV * LANES;
    const int64_t g  = sh.n_head / sh.n_head_kv;
    const int64_t np = (n + 15) & ~(int64_t) 15;
    thread_local std::vector<float> sbuf;
    sbuf.resize((size_t) (g * np));
    const __m256 scale = _mm256_set1_ps(sh.scale);
    for (int64_t j = 0; j < g; ++j) {
        const float * qh = q + (h * g + j) * hd;
        __m512 qv[NV];
        for (int t = 0; t < NV; ++t) qv[t] = _mm512_loadu_ps(qh + t * LANES);
        float * s = sbuf.data() + j * np;
        for (int64_t i = 0; i < n; i += 8) {
            __m256 y[8];
            for (int c = 0; c < 8; ++c) {
                const int64_t cell = cells[std::min(i + c, n - 1)];
                const ggml_fp16_t * kr = (const ggml_fp16_t *) ((const char *) k + (size_t) cell * ks) + h * hd;
                __m512 acc = _mm512_mul_ps(qv[0], _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) kr)));
                for (int t = 1; t < NV; ++t) {
                    acc = _mm512_fmadd_ps(qv[t], _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (kr + t * LANES))), acc);
                }
                y[c] = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1)));
            }
            const __m256 h0123 = _mm256_hadd_ps(_mm256_hadd_ps(y[0], y[1]), _mm256_hadd_ps(y[2], y[3]));
            const __m256 h4567 = _mm256_hadd_ps(_mm256_hadd_ps(y[4], y[5]), _mm256_hadd_ps(y[6], y[7]));
            const __m256 lo = _mm256_permute2f128_ps(h0123, h4567, 0x20);
            const __m256 hi = _mm256_permute2f128_ps(h0123, h4567, 0x31);
            alignas(32) float tmp[8];
            _mm256_store_ps(tmp, _mm256_mul_ps(_mm256_add_ps(lo, hi), scale));
            for (int c = 0; c < 8 && i + c < n; ++c) s[i + c] = tmp[c];
        }
    }
    // softmax weights, in place
    float inv[16];
    for (int64_t j = 0; j < g; ++j) {
        float * s = sbuf.data() + j * np;
        float mx = -INFINITY;
        for (int64_t i = 0; i < n; ++i) mx = std::max(mx, s[i]);
        const __m512 mxv = _mm512_set1_ps(mx);
        __m512 sum = _mm512_setzero_ps();
        for (int64_t i = 0; i < np; i += 16) {
            const __mmask16 live = n - i >= 16 ? (__mmask16) 0xFFFF : (__mmask16) ((1u << (n - i)) - 1);
            const __m512 e = _mm512_maskz_mov_ps(live, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(live, s + i), mxv)));
            _mm512_storeu_ps(s + i, e);
            sum = _mm512_add_ps(sum, e);
        }
        inv[j] = n > 0 ? 1.0f / hsum512(sum) : 0.0f;
    }
    // output, up to 4 heads at a time with their accumulators in registers
    for (int64_t j0 = 0; j0 < g; j0 += 4) {
        const int64_t gj = std::min<int64_t>(4, g - j0);
        __m512 o[4][NV];
        for (int j = 0; j < 4; ++j) {
            for (int t = 0; t < NV; ++t) o[j][t] = _mm512_setzero_ps();
        }
        for (int64_t i = 0; i < n; ++i) {
            const ggml_fp16_t * vr = (const ggml_fp16_t *) ((const char *) v + (size_t) cells[i] * vs) + h * hd;
            __m512 vf[NV];
            for (int t = 0; t < NV; ++t) vf[t] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (vr + t * LANES)));
            for (int j = 0; j < gj; ++j) {
                const __m512 e = _mm512_set1_ps(sbuf[(size_t) ((j0 + j) * np + i)]);
                for (int t = 0; t < NV; ++t) o[j][t] = _mm512_fmadd_ps(e, vf[t], o[j][t]);
            }
        }
        for (int j = 0; j < gj; ++j) {
            const __m512 iv = _mm512_set1_ps(inv[j0 + j]);
            float * oh = out + (h * g + j0 + j) * hd;
            for (int t = 0; t < NV; ++t) _mm512_storeu_ps(oh + t * LANES, _mm512_mul_ps(o[j][t], iv));
        }
    }
}

SPECDEC_AVX512 void item_avx512(const attn_shape & sh, const float * q, const ggml_fp16_t * k, size_t ks,
                                const ggml_fp16_t * v, size_t vs, const int32_t * cells, int64_t n, int64_t h, float * out) {
    const int64_t g = sh.n_head / sh.n_head_kv;
    if (sh.head_dim % LANES != 0 || g > 16) {
        item_impl(sh, q, k, ks, v, vs, cells, n, h, out);
        return;
    }
    switch (sh.head_dim / LANES) {
        case 4:  item512<4>(sh, q, k, ks, v, vs, cells, n, h, out); return;
        case 8:  item512<8>(sh, q, k, ks, v, vs, cells, n, h, out); return;
        case 2:  item512<2>(sh, q, k, ks, v, vs, cells, n, h, out); return;
        case 6:  item512<6>(sh, q, k, ks, v, vs, cells, n, h, out); return;
        default: item_impl(sh, q, k, ks, v, vs, cells, n, h, out); return;
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
