// One 16-row tile of the Q8_0 product per instruction set (internal to q8_0_gemm.cpp).
// Each writes out[c * 16 + r] for columns c < n (n <= MAX_TILE_COLS) and the tile's 16 rows.
#pragma once

#include "kernels/q8_0_gemm.h"

namespace specdec::kernels::detail {

constexpr int64_t MAX_TILE_COLS = 64;

using tile_fn = void (*)(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);

void tile_generic(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);
#if defined(SPECDEC_X86_KERNELS)
void tile_avx2(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);
void tile_avx_vnni(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);
void tile_avx512_vnni(const uint8_t * wt, int64_t nb, const act_block * act, int64_t n, float * out);
#endif

} // namespace specdec::kernels::detail
