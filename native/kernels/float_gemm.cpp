// F16 and BF16 weights for gemm.h: tile packing, the generic tile kernel and the scalar
// reference. Arithmetic (gemm.h): four fp32 chains over k (k mod 4), fused multiply-adds in k
// order, joined as (acc0 + acc1) + (acc2 + acc3).
#include "kernels/tiles.h"

#include "ggml.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace specdec::kernels::detail {

namespace {

inline float bf16_to_fp32(uint16_t h) {
    const uint32_t u = (uint32_t) h << 16;
    float f;
    std::memcpy(&f, &u, sizeof(f));
    return f;
}

template <wtype T> inline float widen(uint16_t h) {
    if constexpr (T == wtype::f16) return ggml_fp16_to_fp32((ggml_fp16_t) h);
    else return bf16_to_fp32(h);
}

} // namespace

void pack_float_block(const void * const * rows, int64_t n_rows, int64_t b, uint8_t * dst) {
    uint16_t * out = (uint16_t *) dst;
    for (int64_t kk = 0; kk < QK8_0; ++kk) {
        for (int64_t r = 0; r < TILE_ROWS; ++r) {
            // padding rows: +0
            out[kk * TILE_ROWS + r] = r < n_rows ? ((const uint16_t *) rows[r])[b * QK8_0 + kk] : 0;
        }
    }
}

template <wtype T>
void ftile_generic(const uint8_t * wt, int64_t k, const float * act, int64_t n, float * out) {
    const uint16_t * w = (const uint16_t *) wt;
    for (int64_t c = 0; c < n; ++c) {
        const float * x = act + c * k;
        for (int64_t r = 0; r < TILE_ROWS; ++r) {
            float acc[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
            for (int64_t i = 0; i < k; ++i) acc[i % 4] = std::fma(widen<T>(w[i * TILE_ROWS + r]), x[i], acc[i % 4]);
            out[c * TILE_ROWS + r] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        }
    }
}

template void ftile_generic<wtype::f16>(const uint8_t *, int64_t, const float *, int64_t, float *);
template void ftile_generic<wtype::bf16>(const uint8_t *, int64_t, const float *, int64_t, float *);

void gemm_float_reference(wtype t, const void * rows_data, int64_t rows, int64_t k, const float * act, int64_t n,
                          float * dst, int64_t ld) {
    const uint16_t * w = (const uint16_t *) rows_data;
    for (int64_t c = 0; c < n; ++c) {
        for (int64_t r = 0; r < rows; ++r) {
            float acc[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
            for (int64_t i = 0; i < k; ++i) {
                const uint16_t h = w[r * k + i];
                const float wv = t == wtype::f16 ? ggml_fp16_to_fp32((ggml_fp16_t) h) : bf16_to_fp32(h);
                acc[i % 4] = std::fma(wv, act[c * k + i], acc[i % 4]);
            }
            dst[c * ld + r] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        }
    }
}

} // namespace specdec::kernels::detail
