// Tile layout per weight type and the per-instruction-set tile kernels (internal to
// quant_gemm*.cpp). A tile kernel writes out[c * 16 + r] for columns c < n (n <= MAX_TILE_COLS)
// and the tile's 16 rows.
#pragma once

#include "kernels/quant_gemm.h"

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

using tile_fn = void (*)(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);

template <wtype T> void tile_generic(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);
#if defined(SPECDEC_X86_KERNELS)
template <wtype T> void tile_avx2(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);
template <wtype T> void tile_avx_vnni(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);
template <wtype T> void tile_avx512_vnni(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);
#endif

} // namespace specdec::kernels::detail
