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

// each row by itself
__attribute__((always_inline)) inline void rows_impl(const attn_shape & sh, const ggml_fp16_t * k, size_t ks,
        const ggml_fp16_t * v, size_t vs, const attn_rows & rows, int64_t h) {
    for (int64_t r = 0; r < rows.n_rows; ++r) {
        item_impl(sh, rows.q[r], k, ks, v, vs, rows.cells[r], rows.n_cells[r], h, rows.out[r]);
    }
}

void rows_generic(const attn_shape & sh, const ggml_fp16_t * k, size_t ks, const ggml_fp16_t * v, size_t vs,
                  const attn_rows & rows, int64_t h) {
    rows_impl(sh, k, ks, v, vs, rows, h);
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

// cells ahead of the one being widened whose K or V rows are fetched into cache
constexpr int64_t PREFETCH_CELLS = 16;

// fetch a cell's K or V row of head h (NV x 16 halves) into cache
template <int NV>
SPECDEC_AVX512 inline void prefetch_row(const ggml_fp16_t * base, size_t stride, int32_t cell, int64_t h) {
    const char * row = (const char *) base + (size_t) cell * stride + (size_t) (h * NV * LANES) * sizeof(ggml_fp16_t);
    for (size_t b = 0; b < NV * LANES * sizeof(ggml_fp16_t); b += 64) _mm_prefetch(row + b, _MM_HINT_T0);
}

// A query head of one row of a work item on AVX-512: its query, its scores (then softmax
// weights) by position in the row's list, its output accumulators (kept in memory between the
// shared cells and the row's own) and its output.
struct query_slot {
    const float * q;
    float *       s;
    float *       acc;
    float *       out;
    float         inv;  // 1 / sum of the weights
};

// per 128-bit lane: [a0 + a1, a2 + a3, b0 + b1, b2 + b3]
SPECDEC_AVX512 inline __m512 pair_sums(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}

// scores of the n cells `cells` for the queries qs[0..nq), written at positions at .. at+n-1 of
// their scores. Per cell, 16 lanes of products over the head (lane l: a_l = q_l k_l, then
// a_l = fma(q_(l+16t), k_(l+16t), a_l) for t = 1 .. NV-1), then one fixed add tree:
//   z_l = a_l + a_(l+8)  (l < 8),   w_m = z_2m + z_2m+1  (m < 4),
//   score = ((w_0 + w_1) + (w_2 + w_3)) * scale.
// A cell's score does not depend on its neighbours: 16 cells at a time share the shuffles of the
// tree, a partial block padded with copies of the last cell. Each block's K rows are widened
// once for all the queries.
template <int NV>
SPECDEC_AVX512 void scores512(query_slot * qs, int64_t nq, int64_t at, const ggml_fp16_t * k, size_t ks,
                              const int32_t * cells, int64_t n, int64_t h, float scale) {
    constexpr int64_t hd = NV * LANES;
    const __m512 scalev = _mm512_set1_ps(scale);
    // the tree leaves cell c's score at position ((c & 1) << 2 | (c & 6) >> 1 | (c & 8)): back to cell order
    const __m512i cell_order = _mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15);
    alignas(64) float kb[16][hd];
    for (int64_t i = 0; i < n; i += 16) {
        for (int c = 0; c < 16; ++c) {
            if (i + c + PREFETCH_CELLS < n) prefetch_row<NV>(k, ks, cells[i + c + PREFETCH_CELLS], h);
            const int64_t cell = cells[std::min(i + c, n - 1)];
            const ggml_fp16_t * kr = (const ggml_fp16_t *) ((const char *) k + (size_t) cell * ks) + h * hd;
            for (int t = 0; t < NV; ++t) {
                _mm512_store_ps(kb[c] + t * LANES, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (kr + t * LANES))));
            }
        }
        const __mmask16 live = n - i >= 16 ? (__mmask16) 0xFFFF : (__mmask16) ((1u << (n - i)) - 1);
        for (int64_t j = 0; j < nq; ++j) {
            __m512 qv[NV];
            for (int t = 0; t < NV; ++t) qv[t] = _mm512_loadu_ps(qs[j].q + t * LANES);
            // z[p]: [z of cell 2p | z of cell 2p+1]
            __m512 z[8];
            for (int p = 0; p < 8; ++p) {
                __m512 a[2];
                for (int e = 0; e < 2; ++e) {
                    const float * kc = kb[2 * p + e];
                    a[e] = _mm512_mul_ps(qv[0], _mm512_load_ps(kc));
                    for (int t = 1; t < NV; ++t) a[e] = _mm512_fmadd_ps(qv[t], _mm512_load_ps(kc + t * LANES), a[e]);
                }
                z[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a[0], a[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                     _mm512_shuffle_f32x4(a[0], a[1], _MM_SHUFFLE(3, 2, 3, 2)));
            }
            // w of cells 4p .. 4p+3, per 128-bit lane: [w0 w1 of 4p, 4p+2 | w2 w3 of 4p, 4p+2 | w0 w1 of 4p+1, 4p+3 | w2 w3 ...]
            __m512 w[4];
            for (int p = 0; p < 4; ++p) w[p] = pair_sums(z[2 * p], z[2 * p + 1]);
            // u0, u1 (cells 0..7, 8..15): w_0 + w_1 in lanes 0 and 2, w_2 + w_3 in lanes 1 and 3
            const __m512 u0 = pair_sums(w[0], w[1]);
            const __m512 u1 = pair_sums(w[2], w[3]);
            const __m512 sum = _mm512_add_ps(_mm512_shuffle_f32x4(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)),
                                             _mm512_shuffle_f32x4(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
            _mm512_mask_storeu_ps(qs[j].s + at + i, live, _mm512_permutexvar_ps(cell_order, _mm512_mul_ps(sum, scalev)));
        }
    }
}

// V rows of a run of cells, widened from the cache
template <int NV>
struct f16_v_rows {
    const ggml_fp16_t * v;
    size_t              vs;
    const int32_t *     cells;
    int64_t             n;
    int64_t             h;
    SPECDEC_AVX512 void load(int64_t i, __m512 * vf) const {
        if (i + PREFETCH_CELLS < n) prefetch_row<NV>(v, vs, cells[i + PREFETCH_CELLS], h);
        const ggml_fp16_t * vr = (const ggml_fp16_t *) ((const char *) v + (size_t) cells[i] * vs) + h * NV * LANES;
        for (int t = 0; t < NV; ++t) vf[t] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (vr + t * LANES)));
    }
};

// V rows of a run of cells, already widened into a buffer
template <int NV>
struct f32_v_rows {
    const float * vb;
    SPECDEC_AVX512 void load(int64_t i, __m512 * vf) const {
        for (int t = 0; t < NV; ++t) vf[t] = _mm512_load_ps(vb + i * NV * LANES + t * LANES);
    }
};

// acc += e_i * v_i for i = 0 .. n-1 in order (16-lane fma), for NQ queries whose weights e_i sit
// at positions at + i, with the accumulators in registers
template <int NV, int NQ, typename VRows>
SPECDEC_AVX512 void accumulate512(query_slot * qs, int64_t at, int64_t n, const VRows & rows) {
    __m512 o[NQ][NV];
    for (int j = 0; j < NQ; ++j) {
        for (int t = 0; t < NV; ++t) o[j][t] = _mm512_loadu_ps(qs[j].acc + t * LANES);
    }
    for (int64_t i = 0; i < n; ++i) {
        __m512 vf[NV];
        rows.load(i, vf);
        for (int j = 0; j < NQ; ++j) {
            const __m512 e = _mm512_set1_ps(qs[j].s[at + i]);
            for (int t = 0; t < NV; ++t) o[j][t] = _mm512_fmadd_ps(e, vf[t], o[j][t]);
        }
    }
    for (int j = 0; j < NQ; ++j) {
        for (int t = 0; t < NV; ++t) _mm512_storeu_ps(qs[j].acc + t * LANES, o[j][t]);
    }
}

// queries whose accumulators fit in registers together
constexpr int64_t ACC_QUERIES = 4;

template <int NV, typename VRows>
SPECDEC_AVX512 void accumulate512(query_slot * qs, int64_t nq, int64_t at, int64_t n, const VRows & rows) {
    switch (nq) {
        case 1:  accumulate512<NV, 1>(qs, at, n, rows); return;
        case 2:  accumulate512<NV, 2>(qs, at, n, rows); return;
        case 3:  accumulate512<NV, 3>(qs, at, n, rows); return;
        default: accumulate512<NV, 4>(qs, at, n, rows); return;
    }
}

// the output accumulation of the queries qs[0..nq) over the n cells `cells`, whose weights sit at
// positions at .. at+n-1. More queries than fit in registers: the V rows are widened once,
// V_BLOCK cells at a time, and each group of ACC_QUERIES queries passes over them.
constexpr int64_t V_BLOCK = 32;

template <int NV>
SPECDEC_AVX512 void values512(query_slot * qs, int64_t nq, int64_t at, const ggml_fp16_t * v, size_t vs,
                              const int32_t * cells, int64_t n, int64_t h) {
    constexpr int64_t hd = NV * LANES;
    if (nq <= ACC_QUERIES) {
        accumulate512<NV>(qs, nq, at, n, f16_v_rows<NV>{ v, vs, cells, n, h });
        return;
    }
    alignas(64) float vb[V_BLOCK * hd];
    for (int64_t i0 = 0; i0 < n; i0 += V_BLOCK) {
        const int64_t nb = std::min(V_BLOCK, n - i0);
        const f16_v_rows<NV> src{ v, vs, cells + i0, n - i0, h };
        for (int64_t i = 0; i < nb; ++i) {
            __m512 vf[NV];
            src.load(i, vf);
            for (int t = 0; t < NV; ++t) _mm512_store_ps(vb + i * hd + t * LANES, vf[t]);
        }
        for (int64_t j0 = 0; j0 < nq; j0 += ACC_QUERIES) {
            accumulate512<NV>(qs + j0, std::min(ACC_QUERIES, nq - j0), at + i0, nb, f32_v_rows<NV>{ vb });
        }
    }
}

// AVX-512 attention for head sizes of NV x 16. The arithmetic of one row (its own definition,
// used for every row on this instruction set, alone or with others in a work item):
//   scores: scores512, over the row's list;
//   softmax: exp512 per cell; the sum in 16 lanes by list position, then hsum512;
//   output: sum over cells in list order of e * v (16-lane fma), times 1 / sum.
// The shared cells are walked once for all the rows' query heads, then each row's own cells for
// its g heads.
template <int NV>
SPECDEC_AVX512 void rows512(const attn_shape & sh, const ggml_fp16_t * k, size_t ks, const ggml_fp16_t * v,
                            size_t vs, const attn_rows & rows, int64_t h) {
    constexpr int64_t hd = NV * LANES;
    const int64_t g  = sh.n_head / sh.n_head_kv;
    const int64_t nq = rows.n_rows * g;
    const int64_t shared = rows.n_shared;
    thread_local std::vector<float> sbuf, abuf;
    thread_local std::vector<query_slot> slots;
    int64_t s_size = 0;
    for (int64_t r = 0; r < rows.n_rows; ++r) s_size += g * ((rows.n_cells[r] + 15) & ~(int64_t) 15);
    sbuf.resize((size_t) s_size);
    abuf.assign((size_t) (nq * hd), 0.0f);
    slots.resize((size_t) nq);
    for (int64_t r = 0, s_at = 0; r < rows.n_rows; ++r) {
        const int64_t np = (rows.n_cells[r] + 15) & ~(int64_t) 15;
        for (int64_t j = 0; j < g; ++j, s_at += np) {
            const int64_t hq = h * g + j;
            slots[(size_t) (r * g + j)] = { rows.q[r] + hq * hd, sbuf.data() + s_at, abuf.data() + (r * g + j) * hd,
                                            rows.out[r] + hq * hd, 0.0f };
        }
    }
    scores512<NV>(slots.data(), nq, 0, k, ks, rows.cells[0], shared, h, sh.scale);
    for (int64_t r = 0; r < rows.n_rows; ++r) {
        scores512<NV>(slots.data() + r * g, g, shared, k, ks, rows.cells[r] + shared, rows.n_cells[r] - shared, h, sh.scale);
    }
    // softmax weights, in place
    for (int64_t r = 0; r < rows.n_rows; ++r) {
        const int64_t n  = rows.n_cells[r];
        const int64_t np = (n + 15) & ~(int64_t) 15;
        for (int64_t j = 0; j < g; ++j) {
            query_slot & qs = slots[(size_t) (r * g + j)];
            float * s = qs.s;
            // the max in 16 lanes (exact in any order)
            __m512 mxv = _mm512_set1_ps(-INFINITY);
            for (int64_t i = 0; i < np; i += 16) {
                const __mmask16 live = n - i >= 16 ? (__mmask16) 0xFFFF : (__mmask16) ((1u << (n - i)) - 1);
                mxv = _mm512_mask_max_ps(mxv, live, _mm512_loadu_ps(s + i), mxv);
            }
            mxv = _mm512_set1_ps(_mm512_reduce_max_ps(mxv));
            __m512 sum = _mm512_setzero_ps();
            for (int64_t i = 0; i < np; i += 16) {
                const __mmask16 live = n - i >= 16 ? (__mmask16) 0xFFFF : (__mmask16) ((1u << (n - i)) - 1);
                const __m512 e = _mm512_maskz_mov_ps(live, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(live, s + i), mxv)));
                _mm512_storeu_ps(s + i, e);
                sum = _mm512_add_ps(sum, e);
            }
            qs.inv = n > 0 ? 1.0f / hsum512(sum) : 0.0f;
        }
    }
    values512<NV>(slots.data(), nq, 0, v, vs, rows.cells[0], shared, h);
    for (int64_t r = 0; r < rows.n_rows; ++r) {
        values512<NV>(slots.data() + r * g, g, shared, v, vs, rows.cells[r] + shared, rows.n_cells[r] - shared, h);
    }
    for (const query_slot & qs : slots) {
        const __m512 iv = _mm512_set1_ps(qs.inv);
        for (int t = 0; t < NV; ++t) _mm512_storeu_ps(qs.out + t * LANES, _mm512_mul_ps(_mm512_loadu_ps(qs.acc + t * LANES), iv));
    }
}

SPECDEC_AVX512 void rows_avx512(const attn_shape & sh, const ggml_fp16_t * k, size_t ks, const ggml_fp16_t * v,
                                size_t vs, const attn_rows & rows, int64_t h) {
    const int64_t g = sh.n_head / sh.n_head_kv;
    if (sh.head_dim % LANES != 0 || g > 16) {
        rows_impl(sh, k, ks, v, vs, rows, h);
        return;
    }
    switch (sh.head_dim / LANES) {
        case 4:  rows512<4>(sh, k, ks, v, vs, rows, h); return;
        case 8:  rows512<8>(sh, k, ks, v, vs, rows, h); return;
        case 2:  rows512<2>(sh, k, ks, v, vs, rows, h); return;
        case 6:  rows512<6>(sh, k, ks, v, vs, rows, h); return;
        default: rows_impl(sh, k, ks, v, vs, rows, h); return;
    }
}

__attribute__((target("avx2,fma"))) void rows_avx2(const attn_shape & sh, const ggml_fp16_t * k, size_t ks,
        const ggml_fp16_t * v, size_t vs, const attn_rows & rows, int64_t h) {
    rows_impl(sh, k, ks, v, vs, rows, h);
}
#endif

} // namespace

void attention_rows(isa kernel, const attn_shape & sh, const ggml_fp16_t * k, size_t k_stride, const ggml_fp16_t * v,
                    size_t v_stride, const attn_rows & rows, int64_t h) {
    switch (kernel) {
#if defined(SPECDEC_X86_KERNELS)
        case isa::avx512_vnni:
            rows_avx512(sh, k, k_stride, v, v_stride, rows, h);
            return;
        case isa::avx_vnni:
        case isa::avx2:
            rows_avx2(sh, k, k_stride, v, v_stride, rows, h);
            return;
#endif
        default:
            rows_generic(sh, k, k_stride, v, v_stride, rows, h);
    }
}

} // namespace specdec::kernels
