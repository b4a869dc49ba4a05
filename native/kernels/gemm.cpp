#include "kernels/gemm.h"
#include "kernels/tiles.h"

#include "ggml.h"
#include "ggml-cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

namespace specdec::kernels {

namespace {

// ggml's blocks (ggml-common.h)
struct ggml_block_q8_0 {
    ggml_fp16_t d;
    int8_t      qs[32];
};
struct ggml_block_q4_0 {
    ggml_fp16_t d;
    uint8_t     qs[16];  // value j in the low nibble of qs[j], value j + 16 in the high nibble
};
struct ggml_block_q4_k {
    ggml_fp16_t d;
    ggml_fp16_t dmin;
    uint8_t     scales[12];  // 8 sub-block scales and mins, 6 bits each
    uint8_t     qs[128];
};
struct ggml_block_q6_k {
    uint8_t     ql[128];  // low 4 bits
    uint8_t     qh[64];   // high 2 bits
    int8_t      scales[16];
    ggml_fp16_t d;
};
struct ggml_block_q8_k {
    float   d;
    int8_t  qs[256];
    int16_t bsums[16];
};
static_assert(sizeof(ggml_block_q8_k) == 292, "ggml block_q8_K layout");
static_assert(sizeof(ggml_block_q8_0) == 34, "ggml block_q8_0 layout");
static_assert(sizeof(ggml_block_q4_0) == 18, "ggml block_q4_0 layout");
static_assert(sizeof(ggml_block_q4_k) == 144, "ggml block_q4_K layout");
static_assert(sizeof(ggml_block_q6_k) == 210, "ggml block_q6_K layout");

// One 32-value block of a weight row, decoded: the unsigned values as the tiles store them
// (offset included), the scale of each half (equal unless Q6_K) and the Q4_K min term (-dm).
struct decoded_block {
    uint8_t u[32];
    float   scale[2];
    float   min = 0.0f;
    // the codes the scales come from: scale[h] = d * sc[h], min = -(dmin * m) (K-quants);
    // scale = d (Q8_0, Q4_0)
    int     sc[2] = { 0, 0 };
    int     m     = 0;
    float   d     = 0.0f;
    float   dmin  = 0.0f;
};

// ggml-quants.c get_scale_min_k4: the 6-bit scale and min of sub-block j of a Q4_K super-block.
void scale_min_k4(int j, const uint8_t * q, uint8_t & d, uint8_t & m) {
    if (j < 4) {
        d = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        d = (uint8_t) ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = (uint8_t) ((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// Block b (32 values) of a row of type t (the layouts of ggml's dequantize_row_*).
void decode_block(wtype t, const void * row, int64_t b, decoded_block & out) {
    switch (t) {
        case wtype::q8_0: {
            const auto & blk = ((const ggml_block_q8_0 *) row)[b];
            for (int j = 0; j < 32; ++j) out.u[j] = (uint8_t) (blk.qs[j] + 128);
            out.scale[0] = out.scale[1] = out.d = ggml_fp16_to_fp32(blk.d);
            break;
        }
        case wtype::q4_0: {
            const auto & blk = ((const ggml_block_q4_0 *) row)[b];
            for (int j = 0; j < 16; ++j) {
                out.u[j]      = blk.qs[j] & 0x0F;
                out.u[j + 16] = blk.qs[j] >> 4;
            }
            out.scale[0] = out.scale[1] = out.d = ggml_fp16_to_fp32(blk.d);
            break;
        }
        case wtype::q4_k: {
            const auto & blk = ((const ggml_block_q4_k *) row)[b / 8];
            const int sb = (int) (b % 8);  // sub-block: the low (even) or high (odd) nibbles of 32 bytes
            const uint8_t * qs = blk.qs + 32 * (sb / 2);
            for (int l = 0; l < 32; ++l) out.u[l] = sb % 2 ? (uint8_t) (qs[l] >> 4) : (uint8_t) (qs[l] & 0x0F);
            uint8_t sc, m;
            scale_min_k4(sb, blk.scales, sc, m);
            out.d    = ggml_fp16_to_fp32(blk.d);
            out.dmin = ggml_fp16_to_fp32(blk.dmin);
            out.sc[0] = out.sc[1] = sc;
            out.m    = m;
            out.scale[0] = out.scale[1] = out.d * (float) sc;
            out.min = -(out.dmin * (float) m);
            break;
        }
        case wtype::q6_k: {
            const auto & blk = ((const ggml_block_q6_k *) row)[b / 8];
            const float d = ggml_fp16_to_fp32(blk.d);
            for (int i = 0; i < 32; ++i) {
                // value e of the super-block: half n of 128, quarter qd of 32, position l
                const int e = (int) (b % 8) * 32 + i, n = e / 128, qd = (e % 128) / 32, l = e % 32;
                const uint8_t ql = blk.ql[n * 64 + (qd % 2) * 32 + l];
                const uint8_t lo = qd < 2 ? (uint8_t) (ql & 0x0F) : (uint8_t) (ql >> 4);
                const uint8_t hi = (uint8_t) ((blk.qh[n * 32 + l] >> (2 * qd)) & 3);
                out.u[i] = (uint8_t) (lo | (hi << 4));
            }
            // the scale of 16 values e..e+15 is scales[e / 16]
            out.d     = d;
            out.sc[0] = blk.scales[(b % 8) * 2];
            out.sc[1] = blk.scales[(b % 8) * 2 + 1];
            out.scale[0] = d * (float) out.sc[0];
            out.scale[1] = d * (float) out.sc[1];
            break;
        }
        default:
            break;  // float types are not decoded by blocks
    }
}

size_t ggml_row_bytes(wtype t, int64_t k) {
    switch (t) {
        case wtype::q8_0: return (size_t) (k / 32) * sizeof(ggml_block_q8_0);
        case wtype::q4_0: return (size_t) (k / 32) * sizeof(ggml_block_q4_0);
        case wtype::q4_k: return (size_t) (k / 256) * sizeof(ggml_block_q4_k);
        case wtype::q6_k: return (size_t) (k / 256) * sizeof(ggml_block_q6_k);
        case wtype::f16:
        case wtype::bf16: return (size_t) k * 2;
    }
    return 0;
}

// Block b of a tile (zeroed beforehand) from the decoded blocks of the tile's rows.
template <wtype T> void pack_block(const decoded_block * rows_blk, int64_t n_rows, uint8_t * tile, int64_t b) {
    using F = detail::tile_traits<T>;
    int64_t i;
    uint8_t * sb = detail::super_block<T>(tile, b, i);
    uint8_t * w = sb + i * F::weight_bytes;
    float * d = (float *) (sb + F::d_offset);
    for (int64_t r = 0; r < TILE_ROWS; ++r) {
        // padding rows: the offset as value (weight 0), scale codes 0
        decoded_block pad;
        if (r >= n_rows) std::fill(std::begin(pad.u), std::end(pad.u), (uint8_t) F::offset);
        const decoded_block & blk = r < n_rows ? rows_blk[r] : pad;
        for (int g = 0; g < 8; ++g) {
            for (int j = 0; j < 4; ++j) {
                const uint8_t v = blk.u[g * 4 + j];
                if constexpr (F::nibbles) {
                    w[((g & 3) * TILE_ROWS + r) * 4 + j] |= g < 4 ? v : (uint8_t) (v << 4);
                } else {
                    w[(g * TILE_ROWS + r) * 4 + j] = v;
                }
            }
        }
        d[r] = blk.d;
        if constexpr (T == wtype::q4_k) {
            sb[F::sc_offset(i, 0) + r] = (uint8_t) blk.sc[0];
            sb[F::m_offset(i) + r]     = (uint8_t) blk.m;
            ((float *) (sb + F::dmin_offset))[r] = blk.dmin;
        } else if constexpr (T == wtype::q6_k) {
            sb[F::sc_offset(i, 0) + r] = (uint8_t) (int8_t) blk.sc[0];
            sb[F::sc_offset(i, 1) + r] = (uint8_t) (int8_t) blk.sc[1];
        }
    }
}

} // namespace

const char * wtype_name(wtype t) {
    switch (t) {
        case wtype::q8_0: return "q8_0";
        case wtype::q4_0: return "q4_0";
        case wtype::q4_k: return "q4_k";
        case wtype::q6_k: return "q6_k";
        case wtype::f16:  return "f16";
        case wtype::bf16: return "bf16";
    }
    return "?";
}

bool wtype_from_ggml(int ggml_type, wtype & out) {
    switch (ggml_type) {
        case GGML_TYPE_Q8_0: out = wtype::q8_0; return true;
        case GGML_TYPE_Q4_0: out = wtype::q4_0; return true;
        case GGML_TYPE_Q4_K: out = wtype::q4_k; return true;
        case GGML_TYPE_Q6_K: out = wtype::q6_k; return true;
        case GGML_TYPE_F16:  out = wtype::f16;  return true;
        case GGML_TYPE_BF16: out = wtype::bf16; return true;
        default: return false;
    }
}

template <wtype T> static int64_t quant_tile_bytes(int64_t k) {
    using F = detail::tile_traits<T>;
    return k / (QK8_0 * F::blocks_per_sb) * F::sb_bytes;
}

int64_t tile_bytes(wtype t, int64_t k) {
    switch (t) {
        case wtype::q8_0: return quant_tile_bytes<wtype::q8_0>(k);
        case wtype::q4_0: return quant_tile_bytes<wtype::q4_0>(k);
        case wtype::q4_k: return quant_tile_bytes<wtype::q4_k>(k);
        case wtype::q6_k: return quant_tile_bytes<wtype::q6_k>(k);
        case wtype::f16:
        case wtype::bf16: return k / QK8_0 * detail::FLOAT_TILE_BLOCK_BYTES;
    }
    return 0;
}

act_type act_type_for(wtype t) {
    switch (t) {
        case wtype::q4_k:
        case wtype::q6_k: return act_type::q8_k;
        case wtype::f16:  return act_type::f16;
        case wtype::bf16: return act_type::bf16;
        default:          return act_type::q8_0;
    }
}

size_t act_column_bytes(act_type t, int64_t k) {
    return t == act_type::f16 || t == act_type::bf16 ? (size_t) k * sizeof(float) : (size_t) (k / QK8_0) * sizeof(act_block);
}

static bool is_float(wtype t) {
    return t == wtype::f16 || t == wtype::bf16;
}

packed_weights::~packed_weights() {
    std::free(data);
}

std::unique_ptr<packed_weights> pack_weights(wtype t, const void * rows_data, int64_t rows, int64_t k, isa kernel) {
    auto p = std::make_unique<packed_weights>();
    p->type        = t;
    p->rows        = rows;
    p->k           = k;
    p->nb          = k / QK8_0;
    p->n_tiles     = (rows + TILE_ROWS - 1) / TILE_ROWS;
    p->tile_bytes  = tile_bytes(t, k);
    p->kernel      = kernel;
    const size_t bytes = (p->bytes() + 63) / 64 * 64;
    p->data = (uint8_t *) std::aligned_alloc(64, bytes);
    if (!p->data) return nullptr;
    std::memset(p->data, 0, bytes);

    const size_t row_bytes = ggml_row_bytes(t, k);
    decoded_block blk[TILE_ROWS];
    for (int64_t tile = 0; tile < p->n_tiles; ++tile) {
        const int64_t n_rows = std::min(TILE_ROWS, rows - tile * TILE_ROWS);
        if (is_float(t)) {
            const void * row_ptrs[TILE_ROWS];
            for (int64_t r = 0; r < n_rows; ++r) row_ptrs[r] = (const char *) rows_data + (tile * TILE_ROWS + r) * row_bytes;
            for (int64_t b = 0; b < p->nb; ++b) {
                detail::pack_float_block(row_ptrs, n_rows, b, p->data + tile * p->tile_bytes + b * detail::FLOAT_TILE_BLOCK_BYTES);
            }
            continue;
        }
        for (int64_t b = 0; b < p->nb; ++b) {
            for (int64_t r = 0; r < n_rows; ++r) {
                decode_block(t, (const char *) rows_data + (tile * TILE_ROWS + r) * row_bytes, b, blk[r]);
            }
            uint8_t * tile_data = p->data + tile * p->tile_bytes;
            switch (t) {
                case wtype::q8_0: pack_block<wtype::q8_0>(blk, n_rows, tile_data, b); break;
                case wtype::q4_0: pack_block<wtype::q4_0>(blk, n_rows, tile_data, b); break;
                case wtype::q4_k: pack_block<wtype::q4_k>(blk, n_rows, tile_data, b); break;
                case wtype::q6_k: pack_block<wtype::q6_k>(blk, n_rows, tile_data, b); break;
                default: break;
            }
        }
    }
    return p;
}

static void fill_sums(act_block & a, const int8_t * q, float d) {
    std::memcpy(a.q4, q, QK8_0);
    int32_t lo = 0, hi = 0;
    for (int j = 0; j < 16; ++j) lo += q[j];
    for (int j = 16; j < 32; ++j) hi += q[j];
    a.d      = d;
    a.sum    = lo + hi;
    a.sum_lo = lo;
    a.corr   = -128 * a.sum;
}

void quantize_act(act_type t, const float * x, int64_t k, void * out_v) {
    if (t == act_type::f16 || t == act_type::bf16) {
        // ggml's conversion (vec_dot_type of F16 / BF16 weights), then back to fp32
        const ggml_type gt = t == act_type::f16 ? GGML_TYPE_F16 : GGML_TYPE_BF16;
        const ggml_from_float_t from_float = ggml_get_type_traits_cpu(gt)->from_float;
        const ggml_to_float_t to_float = ggml_get_type_traits(gt)->to_float;
        float * out = (float *) out_v;
        constexpr int64_t CHUNK = 256;
        uint16_t tmp[CHUNK];
        for (int64_t i0 = 0; i0 < k; i0 += CHUNK) {
            const int64_t n = std::min(CHUNK, k - i0);
            from_float(x + i0, tmp, n);
            to_float(tmp, out + i0, n);
        }
        return;
    }
    act_block * out = (act_block *) out_v;
    // ggml's quantizers write whole rows; go through a small buffer of their blocks
    if (t == act_type::q8_0) {
        static const ggml_from_float_t from_float = ggml_get_type_traits_cpu(GGML_TYPE_Q8_0)->from_float;
        const int64_t nb = k / QK8_0;
        constexpr int64_t CHUNK = 64;
        ggml_block_q8_0 tmp[CHUNK];
        for (int64_t b0 = 0; b0 < nb; b0 += CHUNK) {
            const int64_t n = std::min(CHUNK, nb - b0);
            from_float(x + b0 * QK8_0, tmp, n * QK8_0);
            for (int64_t i = 0; i < n; ++i) fill_sums(out[b0 + i], tmp[i].qs, ggml_fp16_to_fp32(tmp[i].d));
        }
    } else {
        static const ggml_from_float_t from_float = ggml_get_type_traits_cpu(GGML_TYPE_Q8_K)->from_float;
        for (int64_t s = 0; s < k / 256; ++s) {
            ggml_block_q8_k tmp;
            from_float(x + s * 256, &tmp, 256);
            for (int i = 0; i < 8; ++i) fill_sums(out[s * 8 + i], tmp.qs + 32 * i, tmp.d);
        }
    }
}

namespace detail {

template <wtype T>
void tile_generic(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out) {
    using F = tile_traits<T>;
    constexpr int64_t C = 4;
    for (int64_t c0 = 0; c0 < n; c0 += C) {
        const int64_t nc = std::min(C, n - c0);
        float acc[C][TILE_ROWS] = {};
        for (int64_t b = 0; b < nb; ++b) {
            int64_t i;
            const uint8_t * sb = super_block<T>(wt, b, i);
            const uint8_t * wb = sb + i * F::weight_bytes;
            float dr[2][TILE_ROWS], mr[TILE_ROWS];
            for (int64_t r = 0; r < TILE_ROWS; ++r) {
                dr[0][r] = scale_at<T>(sb, i, 0, r);
                dr[1][r] = scale_at<T>(sb, i, 1, r);
                if constexpr (F::mins) mr[r] = min_at<T>(sb, i, r);
            }
            for (int64_t c = 0; c < nc; ++c) {
                const act_block & a  = act[(c0 + c) * nb + b];
                const int8_t    * aq = (const int8_t *) a.q4;
                for (int64_t r = 0; r < TILE_ROWS; ++r) {
                    const auto dot = [&](int g0, int g1, int32_t s) {
                        for (int g = g0; g < g1; ++g) {
                            for (int j = 0; j < 4; ++j) s += (int32_t) weight_at<T>(wb, g, r, j) * (int32_t) aq[g * 4 + j];
                        }
                        return s;
                    };
                    if constexpr (F::halves) {
                        const int32_t s0 = dot(0, 4, int_init<T>(a));
                        acc[c][r] = std::fma(dr[0][r] * a.d, (float) s0, acc[c][r]);
                        const int32_t s1 = dot(4, 8, int_init_hi<T>(a));
                        acc[c][r] = std::fma(dr[1][r] * a.d, (float) s1, acc[c][r]);
                    } else {
                        const int32_t s = dot(0, 8, int_init<T>(a));
                        acc[c][r] = std::fma(dr[0][r] * a.d, (float) s, acc[c][r]);
                        if constexpr (F::mins) acc[c][r] = std::fma(mr[r] * a.d, (float) a.sum, acc[c][r]);
                    }
                }
            }
        }
        for (int64_t c = 0; c < nc; ++c) {
            std::memcpy(out + (c0 + c) * TILE_ROWS, acc[c], sizeof(acc[c]));
        }
    }
}

template void tile_generic<wtype::q8_0>(const uint8_t *, int64_t, const act_block *, int64_t, float *);
template void tile_generic<wtype::q4_0>(const uint8_t *, int64_t, const act_block *, int64_t, float *);
template void tile_generic<wtype::q4_k>(const uint8_t *, int64_t, const act_block *, int64_t, float *);
template void tile_generic<wtype::q6_k>(const uint8_t *, int64_t, const act_block *, int64_t, float *);

} // namespace detail

template <wtype T> static detail::tile_fn tile_for_type(isa kernel) {
    switch (kernel) {
#if defined(SPECDEC_X86_KERNELS)
        case isa::avx512_vnni: return detail::tile_avx512_vnni<T>;
        case isa::avx_vnni:    return detail::tile_avx_vnni<T>;
        case isa::avx2:        return detail::tile_avx2<T>;
#endif
#if defined(SPECDEC_NEON_KERNELS)
        case isa::neon_dotprod: return detail::tile_neon_dotprod<T>;
#endif
        default:               return detail::tile_generic<T>;
    }
}

static detail::tile_fn tile_for(wtype t, isa kernel) {
    switch (t) {
        case wtype::q8_0: return tile_for_type<wtype::q8_0>(kernel);
        case wtype::q4_0: return tile_for_type<wtype::q4_0>(kernel);
        case wtype::q4_k: return tile_for_type<wtype::q4_k>(kernel);
        case wtype::q6_k: return tile_for_type<wtype::q6_k>(kernel);
        default:          return nullptr;
    }
}

template <wtype T> static detail::ftile_fn ftile_for_type(isa kernel) {
    switch (kernel) {
#if defined(SPECDEC_X86_KERNELS)
        case isa::avx512_vnni: return detail::ftile_avx512<T>;
        case isa::avx_vnni:
        case isa::avx2:        return detail::ftile_avx2<T>;
#endif
#if defined(SPECDEC_NEON_KERNELS)
        case isa::neon_dotprod: return detail::ftile_neon<T>;
#endif
        default:               return detail::ftile_generic<T>;
    }
}

void gemm(isa kernel, const packed_weights & w, const void * act_v, int64_t n, float * dst, int64_t ld,
          int64_t tile_begin, int64_t tile_end) {
    if (!isa_supported(kernel)) kernel = isa::generic;
    // tile by tile, up to MAX_TILE_COLS columns at a time; per_col: the tile kernel's size argument
    // and the activations' stride per column (act_blocks, or floats)
    const auto run = [&](auto tile, const auto * act, int64_t per_col) {
        alignas(64) float out[detail::MAX_TILE_COLS * TILE_ROWS];
        for (int64_t t = tile_begin; t < tile_end; ++t) {
            const int64_t r0 = t * TILE_ROWS;
            const int64_t nr = std::min(TILE_ROWS, w.rows - r0);
            for (int64_t c0 = 0; c0 < n; c0 += detail::MAX_TILE_COLS) {
                const int64_t nc = std::min(detail::MAX_TILE_COLS, n - c0);
                tile(w.tile(t), per_col, act + c0 * per_col, nc, out);
                for (int64_t c = 0; c < nc; ++c) {
                    std::memcpy(dst + (c0 + c) * ld + r0, out + c * TILE_ROWS, (size_t) nr * sizeof(float));
                }
            }
        }
    };
    if (is_float(w.type)) {
        run(w.type == wtype::f16 ? ftile_for_type<wtype::f16>(kernel) : ftile_for_type<wtype::bf16>(kernel),
            (const float *) act_v, w.k);
    } else {
        run(tile_for(w.type, kernel), (const act_block *) act_v, w.nb);
    }
}

void gemm_reference(wtype t, const void * rows_data, int64_t rows, int64_t k, const void * act_v, int64_t n,
                    float * dst, int64_t ld) {
    if (is_float(t)) {
        detail::gemm_float_reference(t, rows_data, rows, k, (const float *) act_v, n, dst, ld);
        return;
    }
    const act_block * act = (const act_block *) act_v;
    const int64_t nb = k / QK8_0;
    const size_t row_bytes = ggml_row_bytes(t, k);
    const int32_t offset = t == wtype::q8_0 ? 128 : t == wtype::q4_0 ? 8 : t == wtype::q6_k ? 32 : 0;
    decoded_block wb;
    for (int64_t c = 0; c < n; ++c) {
        for (int64_t r = 0; r < rows; ++r) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; ++b) {
                decode_block(t, (const char *) rows_data + r * row_bytes, b, wb);
                const act_block & ab = act[c * nb + b];
                const int8_t * aq = (const int8_t *) ab.q4;
                int32_t dot[2] = { 0, 0 };  // signed values, by half
                for (int j = 0; j < 32; ++j) dot[j / 16] += ((int32_t) wb.u[j] - offset) * (int32_t) aq[j];
                if (t == wtype::q6_k) {
                    acc = std::fma(wb.scale[0] * ab.d, (float) dot[0], acc);
                    acc = std::fma(wb.scale[1] * ab.d, (float) dot[1], acc);
                } else {
                    acc = std::fma(wb.scale[0] * ab.d, (float) (dot[0] + dot[1]), acc);
                    if (t == wtype::q4_k) acc = std::fma(wb.min * ab.d, (float) ab.sum, acc);
                }
            }
            dst[c * ld + r] = acc;
        }
    }
}

} // namespace specdec::kernels
