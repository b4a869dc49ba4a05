// Tile layout per weight type and the per-instruction-set tile kernels (internal to gemm*.cpp and
// float_gemm*.cpp). A tile kernel writes out[c * 16 + r] for columns c < n (n <= MAX_TILE_COLS)
// and the tile's 16 rows.
#pragma once

#include "kernels/gemm.h"

#include <array>
#include <cstddef>
#include <utility>

namespace specdec::kernels::detail {

constexpr int64_t MAX_TILE_COLS = 64;

// Layout of the tiles of type T (16 rows each). A tile is a run of super-blocks: 8 blocks of 32
// values for the K-quants (one ggml super-block), 1 block otherwise. A super-block holds its
// blocks' weight bytes, then the codes its scales are formed from:
//   Q8_0, Q4_0: fp32 scale[16 rows]
//   Q4_K:       u8 sc[8 blocks][16], u8 m[8 blocks][16], fp32 d[16], fp32 dmin[16]
//   Q6_K:       i8 sc[16 halves][16], fp32 d[16]
// The K-quant scales are formed in the kernels as ggml's dequantizers form them (d * sc, dmin * m:
// exact products), so the tiles keep the file's density (Q4_K: 4.75 bits a weight for 4.5).
template <wtype T> struct tile_traits {
    static constexpr bool    nibbles = T == wtype::q4_0 || T == wtype::q4_k;  // two values to a byte
    static constexpr bool    halves  = T == wtype::q6_k;                      // a scale per 16 values
    static constexpr bool    mins    = T == wtype::q4_k;                      // a min per block
    static constexpr int32_t offset  = T == wtype::q8_0 ? 128 : T == wtype::q4_0 ? 8 : T == wtype::q6_k ? 32 : 0;
    static constexpr int64_t blocks_per_sb = T == wtype::q4_k || T == wtype::q6_k ? 8 : 1;
    static constexpr int64_t weight_bytes  = nibbles ? 4 * TILE_ROWS * 4 : 8 * TILE_ROWS * 4;  // one block's
    static constexpr int64_t codes_offset  = blocks_per_sb * weight_bytes;
    static constexpr int64_t codes_bytes   = T == wtype::q4_k ? 2 * 8 * TILE_ROWS + 2 * TILE_ROWS * 4
                                           : T == wtype::q6_k ? 16 * TILE_ROWS + TILE_ROWS * 4
                                           : TILE_ROWS * 4;
    static constexpr int64_t sb_bytes      = codes_offset + codes_bytes;
    static_assert(sb_bytes % 64 == 0, "super-blocks keep 64-byte alignment");

    // where the codes of block i (half h) start inside a super-block
    static constexpr int64_t sc_offset(int64_t i, int h) {
        return codes_offset + (T == wtype::q6_k ? (2 * i + h) * TILE_ROWS : i * TILE_ROWS);
    }
    static constexpr int64_t m_offset(int64_t i) { return codes_offset + 8 * TILE_ROWS + i * TILE_ROWS; }
    static constexpr int64_t d_offset    = codes_offset + (T == wtype::q4_k ? 16 * TILE_ROWS : T == wtype::q6_k ? 16 * TILE_ROWS : 0);
    static constexpr int64_t dmin_offset = d_offset + TILE_ROWS * 4;
};

// The super-block of block b of a tile, and the block's index i in it.
template <wtype T, class Byte> inline Byte * super_block(Byte * tile, int64_t b, int64_t & i) {
    using F = tile_traits<T>;
    i = b % F::blocks_per_sb;
    return tile + b / F::blocks_per_sb * F::sb_bytes;
}

// Scale of row r in block i (half h) of a super-block, and the Q4_K min term (-dmin * m), in fp32.
template <wtype T> inline float scale_at(const uint8_t * sb, int64_t i, int h, int64_t r) {
    using F = tile_traits<T>;
    const float * d = (const float *) (sb + F::d_offset);
    if constexpr (T == wtype::q4_k) return d[r] * (float) sb[F::sc_offset(i, h) + r];
    else if constexpr (T == wtype::q6_k) return d[r] * (float) (int8_t) sb[F::sc_offset(i, h) + r];
    else return d[r];
}
template <wtype T> inline float min_at(const uint8_t * sb, int64_t i, int64_t r) {
    using F = tile_traits<T>;
    return -(((const float *) (sb + F::dmin_offset))[r] * (float) sb[F::m_offset(i) + r]);
}

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

// The column-group functions K<1>::fn .. K<N>::fn of a tile kernel, as a table.
template <class Fn, template <int> class K, size_t... I>
constexpr std::array<Fn, sizeof...(I)> group_table(std::index_sequence<I...>) {
    return { K<(int) I + 1>::fn... };
}

// Runs a tile kernel's column-group functions (t[j] handles j + 1 columns) over n columns: groups
// of W (as many accumulators as the registers hold), the rest in one smaller group. The
// arithmetic per column is the same in every group size. `per_col` is both the functions' size
// argument (blocks, or values) and the activations' stride per column.
template <class Fn, size_t W, class A>
inline void run_groups(const std::array<Fn, W> & t, const uint8_t * wt, int64_t per_col, const A * act, int64_t n, float * out) {
    int64_t c = 0;
    for (; c + (int64_t) W <= n; c += W) t[W - 1](wt, per_col, act + c * per_col, out + c * TILE_ROWS);
    if (c < n) t[n - c - 1](wt, per_col, act + c * per_col, out + c * TILE_ROWS);
}

// float_gemm.cpp
void pack_float_block(const void * const * rows, int64_t n_rows, int64_t b, uint8_t * dst);
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
