// Tile layout per weight type and the per-instruction-set tile kernels (internal to
// gemm*.cpp, float_gemm*.cpp). A tile kernel writes out[c * 16 + r] for columns c < n (n <= MAX_TILE_COLS)
// and the tile's 16 rows.
#pragma once

#include "kernels/gemm.h"

namespace specdec::kernels::detail {

constexpr int64_t MAX_TILE_COLS = 64;

// Layout of one tile block (16 rows x 32 values) of type T: weight bytes, then scales, then mins.
template <wtype T> struct tile_traits {
    static constexpr bool    nibbles = T == wtype::q4_0 || T == wtype::q4_k;  // two values to a byte
    static constexpr bool    halves  = T == wtype::q6_k;                      // a scale per 16 values
    static constexpr bool    mins    = T == wtype::q4_k;                      // a min per block
    static constexpr int32_t offset  = T == wtype::q8_0 ? 128 : T == wtype::q4_0 ? 8 : T == wtype::q6_k ? 32 : 0;
    static constexpr int64_t weight_bytes = nibbles ? 4 * TILE_ROWS * 4 : 8 * TILE_ROWS * 4;
    static constexpr int64_t scales_offset = weight_bytes;
    static constexpr int64_t mins_offset   = scales_offset + (halves ? 2 : 1) * TILE_ROWS * 4;
    static constexpr int64_t block_bytes   = mins_offset + (mins ? TILE_ROWS * 4 : 0);
};

// The unsigned weight byte of group g (values 4g..4g+3 of the block), row r, value j.
template <wtype T> inline uint8_t weight_at(const uint8_t * wb, int g, int64_t r, int j) {
    if constexpr (tile_traits<T>::nibbles) {
        const uint8_t v = wb[((g & 3) * TILE_ROWS + r) * 4 + j];
        return g < 4 ? (uint8_t) (v & 0x0F) : (uint8_t) (v >> 4);
    } else {
        return wb[(g * TILE_ROWS + r) * 4 + j];
    }
}

// Float tiles (F16, BF16): [K][16 rows] 16-bit values, a 32-value block of 16 rows = 1024 bytes.
constexpr int64_t FLOAT_TILE_BLOCK_BYTES = QK8_0 * TILE_ROWS * 2;

// The integer sum a column's dot product over the whole block (or its first half; int_init_hi:
// the second half) starts from: it takes back the unsigned offset of the stored weights.
template <wtype T> inline int32_t int_init(const act_block & a) {
    using F = tile_traits<T>;
    if constexpr (T == wtype::q8_0) return a.corr;  // precomputed: a broadcast load in the hot loop
    else return -F::offset * (F::halves ? a.sum_lo : a.sum);
}
template <wtype T> inline int32_t int_init_hi(const act_block & a) {
    return -tile_traits<T>::offset * (a.sum - a.sum_lo);
}

using tile_fn = void (*)(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);
// act: n columns of k floats (rounded to the weight type), one after another
using ftile_fn = void (*)(const uint8_t * wt, int64_t k, const float * act, int64_t n, float * out);

// float_gemm.cpp
void pack_float_block(wtype t, const void * const * rows, int64_t n_rows, int64_t b, uint8_t * dst);
void gemm_float_reference(wtype t, const void * rows_data, int64_t rows, int64_t k, const float * act, int64_t n,
                          float * dst, int64_t ld);
template <wtype T> void ftile_generic(const uint8_t * wt, int64_t k, const float * act, int64_t n, float * out);
#if defined(SPECDEC_X86_KERNELS)
template <wtype T> void ftile_avx2(const uint8_t * wt, int64_t k, const float * act, int64_t n, float * out);
template <wtype T> void ftile_avx512(const uint8_t * wt, int64_t k, const float * act, int64_t n, float * out);
#endif
#if defined(SPECDEC_NEON_KERNELS)
template <wtype T> void tile_neon_dotprod(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);
template <wtype T> void ftile_neon(const uint8_t * wt, int64_t k, const float * act, int64_t n, float * out);
#endif

template <wtype T> void tile_generic(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);
#if defined(SPECDEC_X86_KERNELS)
template <wtype T> void tile_avx2(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);
template <wtype T> void tile_avx_vnni(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);
template <wtype T> void tile_avx512_vnni(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);
#endif

} // namespace specdec::kernels::detail
