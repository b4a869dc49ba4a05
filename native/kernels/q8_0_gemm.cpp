#include "kernels/q8_0_gemm.h"
#include "kernels/q8_0_tiles.h"

#include "ggml.h"
#include "ggml-cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

namespace specdec::kernels {

namespace {

// ggml's block_q8_0 (ggml-common.h): fp16 scale, then 32 int8 values.
struct ggml_block_q8_0 {
    ggml_fp16_t d;
    int8_t      qs[QK8_0];
};
static_assert(sizeof(ggml_block_q8_0) == 34, "ggml block_q8_0 layout");

} // namespace

packed_q8_0::~packed_q8_0() {
    std::free(data);
}

std::unique_ptr<packed_q8_0> pack_q8_0(const void * q8_0_rows, int64_t rows, int64_t k, isa kernel) {
    auto p = std::make_unique<packed_q8_0>();
    p->rows    = rows;
    p->k       = k;
    p->nb      = k / QK8_0;
    p->n_tiles = (rows + TILE_ROWS - 1) / TILE_ROWS;
    p->kernel  = kernel;
    const size_t bytes = p->bytes();
    p->data = (uint8_t *) std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p->data) return nullptr;

    const auto * src = (const ggml_block_q8_0 *) q8_0_rows;
    for (int64_t t = 0; t < p->n_tiles; ++t) {
        for (int64_t b = 0; b < p->nb; ++b) {
            uint8_t * dst = p->data + (t * p->nb + b) * TILE_BLOCK_BYTES;
            float   * scales = (float *) (dst + 8 * TILE_ROWS * 4);
            for (int64_t r = 0; r < TILE_ROWS; ++r) {
                const int64_t row = t * TILE_ROWS + r;
                if (row >= rows) {
                    // padding rows: weight 0 (stored as 128), scale 0
                    for (int g = 0; g < 8; ++g) std::memset(dst + (g * TILE_ROWS + r) * 4, 0x80, 4);
                    scales[r] = 0.0f;
                    continue;
                }
                const ggml_block_q8_0 & blk = src[row * p->nb + b];
                for (int g = 0; g < 8; ++g) {
                    for (int j = 0; j < 4; ++j) {
                        dst[(g * TILE_ROWS + r) * 4 + j] = (uint8_t) (blk.qs[g * 4 + j] + 128);
                    }
                }
                scales[r] = ggml_fp16_to_fp32(blk.d);
            }
        }
    }
    return p;
}

void quantize_act_q8_0(const float * x, int64_t k, act_block * out) {
    static const ggml_from_float_t from_float = ggml_get_type_traits_cpu(GGML_TYPE_Q8_0)->from_float;
    const int64_t nb = k / QK8_0;
    // ggml's quantizer writes whole rows; go through a small buffer of its blocks
    constexpr int64_t CHUNK = 64;
    ggml_block_q8_0 tmp[CHUNK];
    for (int64_t b0 = 0; b0 < nb; b0 += CHUNK) {
        const int64_t n = std::min(CHUNK, nb - b0);
        from_float(x + b0 * QK8_0, tmp, n * QK8_0);
        for (int64_t i = 0; i < n; ++i) {
            act_block & a = out[b0 + i];
            std::memcpy(a.q4, tmp[i].qs, QK8_0);
            int32_t sum = 0;
            for (int j = 0; j < QK8_0; ++j) sum += tmp[i].qs[j];
            a.d    = ggml_fp16_to_fp32(tmp[i].d);
            a.corr = -128 * sum;
        }
    }
}

namespace detail {

void tile_generic(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out) {
    constexpr int64_t C = 4;
    for (int64_t c0 = 0; c0 < n; c0 += C) {
        const int64_t nc = std::min(C, n - c0);
        float acc[C][TILE_ROWS] = {};
        for (int64_t b = 0; b < nb; ++b) {
            const uint8_t * wb = wt + b * TILE_BLOCK_BYTES;
            const float   * dr = (const float *) (wb + 8 * TILE_ROWS * 4);
            for (int64_t c = 0; c < nc; ++c) {
                const act_block & a  = act[(c0 + c) * nb + b];
                const int8_t    * aq = (const int8_t *) a.q4;
                for (int64_t r = 0; r < TILE_ROWS; ++r) {
                    int32_t s = a.corr;
                    for (int g = 0; g < 8; ++g) {
                        for (int j = 0; j < 4; ++j) {
                            s += (int32_t) wb[(g * TILE_ROWS + r) * 4 + j] * (int32_t) aq[g * 4 + j];
                        }
                    }
                    const float dd = dr[r] * a.d;
                    acc[c][r] = std::fma(dd, (float) s, acc[c][r]);
                }
            }
        }
        for (int64_t c = 0; c < nc; ++c) {
            std::memcpy(out + (c0 + c) * TILE_ROWS, acc[c], sizeof(acc[c]));
        }
    }
}

} // namespace detail

static detail::tile_fn tile_for(isa kernel) {
    switch (kernel) {
#if defined(SPECDEC_X86_KERNELS)
        case isa::avx512_vnni: return detail::tile_avx512_vnni;
        case isa::avx_vnni:    return detail::tile_avx_vnni;
        case isa::avx2:        return detail::tile_avx2;
#endif
        default:               return detail::tile_generic;
    }
}

void gemm_q8_0(isa kernel, const packed_q8_0 & w, const act_block * act, int64_t n, float * dst, int64_t ld,
               int64_t tile_begin, int64_t tile_end) {
    const detail::tile_fn tile = tile_for(isa_supported(kernel) ? kernel : isa::generic);
    alignas(64) float out[detail::MAX_TILE_COLS * TILE_ROWS];
    for (int64_t t = tile_begin; t < tile_end; ++t) {
        const int64_t r0 = t * TILE_ROWS;
        const int64_t nr = std::min(TILE_ROWS, w.rows - r0);
        for (int64_t c0 = 0; c0 < n; c0 += detail::MAX_TILE_COLS) {
            const int64_t nc = std::min(detail::MAX_TILE_COLS, n - c0);
            tile(w.tile(t), w.nb, act + c0 * w.nb, nc, out);
            for (int64_t c = 0; c < nc; ++c) {
                std::memcpy(dst + (c0 + c) * ld + r0, out + c * TILE_ROWS, (size_t) nr * sizeof(float));
            }
        }
    }
}

void gemm_q8_0_reference(const void * q8_0_rows, int64_t rows, int64_t k, const act_block * act, int64_t n,
                         float * dst, int64_t ld) {
    const auto * w = (const ggml_block_q8_0 *) q8_0_rows;
    const int64_t nb = k / QK8_0;
    for (int64_t c = 0; c < n; ++c) {
        for (int64_t r = 0; r < rows; ++r) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; ++b) {
                const ggml_block_q8_0 & wb = w[r * nb + b];
                const act_block       & ab = act[c * nb + b];
                const int8_t * aq = (const int8_t *) ab.q4;
                int32_t dot = 0;
                for (int j = 0; j < QK8_0; ++j) dot += (int32_t) wb.qs[j] * (int32_t) aq[j];
                const float dd = ggml_fp16_to_fp32(wb.d) * ab.d;
                acc = std::fma(dd, (float) dot, acc);
            }
            dst[c * ld + r] = acc;
        }
    }
}

} // namespace specdec::kernels
