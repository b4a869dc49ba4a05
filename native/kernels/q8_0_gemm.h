// Matrix products with Q8_0 weights for small batches (one token, or a verification tree of a
// few dozen), built for batch invariance: every output element is computed by the same
// arithmetic whatever the batch size, the column's place in it or the thread split, so a token's
// logits are bit-identical alone and inside a verification batch.
//
// Arithmetic of one output element (row r, column c), on every instruction set:
//   acc = 0
//   for each 32-value block b, in order:
//       dot = sum_j w[r][b].qs[j] * a[c][b].qs[j]      (exact, in int32)
//       acc = fma(fp32(w[r][b].d) * a[c][b].d, (float) dot, acc)
// Activations are quantized to Q8_0 with ggml's own quantizer, so the only difference from
// ggml's dot product is the order of the float sums (ggml keeps 8 partial sums per row).
//
// The weights are repacked once at load time into tiles of 16 rows: for each block, 8 groups of
// [16 rows x 4 bytes] stored as unsigned (qs + 128), then the 16 row scales as fp32. One
// AVX-512 VNNI instruction then multiplies 4 values of 16 rows by 4 broadcast activation values;
// the +128 offset is taken back exactly with the activation block's sum (corr = -128 * sum qs).
#pragma once

#include "kernels/cpu_features.h"

#include <cstddef>
#include <cstdint>
#include <memory>

namespace specdec::kernels {

constexpr int64_t QK8_0            = 32;
constexpr int64_t TILE_ROWS        = 16;
constexpr int64_t TILE_BLOCK_BYTES = 8 * TILE_ROWS * 4 + TILE_ROWS * 4;  // 576

// One quantized block of an activation column.
struct act_block {
    int32_t q4[8];  // the 32 int8 values, 4 to an int32 (byte order of memory)
    float   d;      // scale (ggml's fp16 scale, widened)
    int32_t corr;   // -128 * sum of the 32 values
};
static_assert(sizeof(act_block) == 40, "act_block layout");

struct packed_q8_0 {
    int64_t rows    = 0;  // output rows (M)
    int64_t k       = 0;  // input size (K, a multiple of 32)
    int64_t nb      = 0;  // blocks per row (K / 32)
    int64_t n_tiles = 0;  // ceil(rows / 16)
    isa     kernel  = isa::generic;
    uint8_t * data  = nullptr;  // n_tiles * nb * TILE_BLOCK_BYTES, 64-byte aligned

    packed_q8_0() = default;
    packed_q8_0(const packed_q8_0 &) = delete;
    packed_q8_0 & operator=(const packed_q8_0 &) = delete;
    ~packed_q8_0();

    size_t bytes() const { return (size_t) (n_tiles * nb * TILE_BLOCK_BYTES); }
    const uint8_t * tile(int64_t t) const { return data + t * nb * TILE_BLOCK_BYTES; }
};

// Repacks `rows` rows of ggml Q8_0 blocks (K / 32 blocks of 34 bytes each, row after row).
// Returns null when memory runs out.
std::unique_ptr<packed_q8_0> pack_q8_0(const void * q8_0_rows, int64_t rows, int64_t k, isa kernel);

// Quantizes one activation column of k floats with ggml's Q8_0 quantizer.
void quantize_act_q8_0(const float * x, int64_t k, act_block * out);

// dst[c * ld + r] = row r of the weights . column c of the activations, for the rows of tiles
// [tile_begin, tile_end) and columns [0, n). act holds n columns of nb blocks each.
void gemm_q8_0(isa kernel, const packed_q8_0 & w, const act_block * act, int64_t n, float * dst, int64_t ld,
               int64_t tile_begin, int64_t tile_end);

// The definition above in plain scalar C++ over ggml's own Q8_0 rows (tests compare against it).
void gemm_q8_0_reference(const void * q8_0_rows, int64_t rows, int64_t k, const act_block * act, int64_t n,
                         float * dst, int64_t ld);

} // namespace specdec::kernels
